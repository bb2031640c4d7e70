"""The dub editor: timeline, viewer, transport, pose panel, preview rendering and export."""
