"""Recordings: read volcast, cryptofeed and hftbacktest files as frames; write volcast's.

Readers stream (one line at a time) and yield frames in file order; ``open_recording``
picks the reader from the file's content and ``merge_recordings`` joins files by
receive time. ``RecordingWriter`` writes ``*.vcr.gz`` files (``docs/record-format.md``).
"""

from connectors.record.cryptofeed import read_cryptofeed
from connectors.record.detect import detect_venue, merge_recordings, open_recording, sniff_format
from connectors.record.frames import Frame, FrameKind, RecordingFormatError
from connectors.record.hftbacktest import read_hftbacktest
from connectors.record.volcast_format import RecordingHeader, read_header, read_volcast
from connectors.record.writer import RecordingWriter

__all__ = [
    "Frame",
    "FrameKind",
    "RecordingFormatError",
    "RecordingHeader",
    "RecordingWriter",
    "detect_venue",
    "merge_recordings",
    "open_recording",
    "read_cryptofeed",
    "read_header",
    "read_hftbacktest",
    "read_volcast",
    "sniff_format",
]
