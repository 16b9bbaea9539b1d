"""The built-in demo web: a generated mini-web of captioned scenes, its evaluation sets and a
loopback server. Only the local demo and the tests use it; the real data path is `alignpipe.data`."""
