"""The media plane: the recorder (aiortc + PyAV), finalize and recovery, quality stats.

No HTTP and no SQL here.
"""
