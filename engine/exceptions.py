"""The market engine's exception tree; the runner turns each into one outcome.

::

    Exception
     +-- Fenced            another engine owns the market (newer epoch or lease): stop
     +-- StateLost         the epoch key or the group vanished (Redis lost its data): recover
     |    +-- TopologyChanged  the market's slot is served elsewhere now (failover): reconnect
     +-- CommitConflict    the applied id moved, or the commit was refused: recover
     |    +-- Stolen          another consumer took delivery of entries: recover, claiming them
     |    +-- ScriptMissing   NOSCRIPT in a pipelined commit (nothing committed): reload, recover
     +-- RecoveryError     snapshot and streams disagree: stop (``engine.recovery``)

``engine.scripts`` maps the scripts' error replies to these.
"""

from __future__ import annotations


class Fenced(Exception):
    """Another engine owns the market (its epoch or lease is newer): stop."""


class StateLost(Exception):
    """The market's epoch key is gone (Redis restarted without its data): recover again."""


class TopologyChanged(StateLost):
    """MOVED/ASK/READONLY/CLUSTERDOWN: the slot moved (a failover): new slot map, recover."""


class CommitConflict(Exception):
    """The recorded last applied id is not the one this engine expected: recover again."""


class Stolen(CommitConflict):
    """Another consumer took delivery of entries (a zombie's read): recover, claiming them."""


class ScriptMissing(CommitConflict):
    """NOSCRIPT in a pipelined commit (nothing was committed): reload and recover."""


class RecoveryError(Exception):
    """Snapshot and streams disagree (e.g. the replayed seq differs from ``:out``): stop."""
