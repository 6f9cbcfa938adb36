"""The Faust app, topic catalogue, codecs and CLI wiring."""
