"""Plugins that inject one known fault, packaged so the installed gate can check itself.

``attnbench gate --self-check`` loads ``gate_probe`` on one side and one of ``gate_slow``
(a 1.3x slowdown), ``gate_memory`` (extra peak memory) or ``gate_wrong`` (a wrong output) on
the other, and counts how often the gate sees the fault (power) and how often it raises an
alarm on identical sides (false alarms). They register a variant named ``gate_probe`` only
when imported; importing ``attnbench`` never imports them.
"""
