"""A plugin that cannot be imported: loading it must raise PluginError naming it."""

raise ImportError("needs the 'fancy_kernels' package (simulated)")
