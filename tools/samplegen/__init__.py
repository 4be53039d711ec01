"""The generator of the bundled offline sample (`make sample`: python -m tools.samplegen).

Not part of the running service: it writes service/sample_data once, and the service replays
those files through service/sources/sample.py. generator.py draws the posts, users and pages;
text.py holds the words, names and places they are made of.
"""
