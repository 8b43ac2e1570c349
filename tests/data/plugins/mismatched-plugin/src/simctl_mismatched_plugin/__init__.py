"""Test fixture: plugins whose hooks do not match simctl's specs."""
