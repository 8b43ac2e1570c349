"""Built-in simctl plugins, registered through the `simctl` entry-point group like any other."""
