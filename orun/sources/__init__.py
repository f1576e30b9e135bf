"""Sources: from the argument a user typed to an immutable, content-addressed snapshot.

``parse_source`` turns ``-``, an absolute path or a git URL (plus --branch/--commit)
into a `SourceRef`; `SnapshotStore.take` copies or clones it into
``$ORUN_HOME/snapshots/<digest>``, a directory the rest of orun treats as read-only.
"""

from orun.sources.ref import NO_SOURCE, SourceKind, SourceRef, is_git_source, parse_source
from orun.sources.snapshot import EMPTY_DIGEST, Snapshot, SnapshotStore

__all__ = [
    "EMPTY_DIGEST",
    "NO_SOURCE",
    "Snapshot",
    "SnapshotStore",
    "SourceKind",
    "SourceRef",
    "is_git_source",
    "parse_source",
]
