"""Many photos or a video at a time: ``facerecon batch`` and ``facerecon video``.

Kept apart from the core package (which never imports it): it adds process pools, Ray and video
I/O on top of :class:`facerecon.pipeline.Reconstructor`.
"""
