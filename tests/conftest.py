pytest_plugins = ["diaspora.testing.plugin"]
