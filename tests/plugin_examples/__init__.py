"""Small plugin modules for the plugin tests: each registers variants under test-only names
when imported (``--plugin plugin_examples.toy_attention``), or fails to import on purpose."""
