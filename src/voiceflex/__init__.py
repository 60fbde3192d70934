"""voiceflex: voice-guided routine player."""

__version__ = "0.1.0"
