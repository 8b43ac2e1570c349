"""``smartsim.error``: SmartSim's error names over simctl's errors, so that a
driver's ``except SSConfigError`` catches what simctl raises."""

import simctl

SmartSimError = simctl.SimctlError
SSConfigError = simctl.ConfigError
SSUnsupportedError = simctl.ConfigError
SSReservedKeywordError = simctl.ConfigError
SSDBIDConflictError = simctl.ConfigError
EntityExistsError = simctl.ConfigError
UserStrategyError = simctl.ConfigError
ParameterWriterError = simctl.ConfigError
SSDBFilesNotParseable = simctl.SimctlError
SSInternalError = simctl.SimctlError
LauncherError = simctl.LaunchError
ShellError = simctl.LaunchError
AllocationError = simctl.SchedulerError
LauncherUnsupportedFeature = simctl.ConfigError

__all__ = ["AllocationError", "EntityExistsError", "LauncherError", "LauncherUnsupportedFeature",
           "ParameterWriterError", "SSConfigError", "SSDBFilesNotParseable", "SSDBIDConflictError",
           "SSInternalError", "SSReservedKeywordError", "SSUnsupportedError", "ShellError", "SmartSimError",
           "UserStrategyError"]
