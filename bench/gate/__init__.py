"""The CI regression gate (``attnbench gate``): is this change slower, hungrier or wrong?

Read in this order:
    stats      median ratio, bootstrap interval, Mann-Whitney U (numpy only)
    verdicts   findings per case and kind, what fails the gate, exit codes
    worktree   the base revision in a temporary ``git worktree``, removed on any exit
    worker     one subprocess per side: that side's variants, the driver's instruments
    measure    both sides in one job, interleaved A B B A, confirmation in fresh processes
    stored     hard gates on two stored results directories
    report     gate.json (for machines and ``attnbench report --gate``) and gate.md (for people)
    selfcheck  A/A false-alarm rate and power against injected faults
"""
