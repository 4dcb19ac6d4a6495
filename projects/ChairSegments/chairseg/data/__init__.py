"""Chair Segments data on disk: the procedural generator (``synthetic``, ``backgrounds``), the
official archives' downloader (``download``) and find-or-generate for a run (``prepare``)."""
