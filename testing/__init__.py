"""What tests/ and bench/ share: the fake X API (`fake_x`), 127.0.0.1 and the compose stack's
configs rendered for it (`loopback`), the one process launcher (`processes`) and the one way to
wait (`waiting`). Outside the package on purpose: the wheel carries what the service runs, and
nothing else.
"""
