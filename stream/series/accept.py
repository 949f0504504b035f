"""An operator's accept, in a series task: the covered series rebased on what they see now.

``driftline accept --model M [--segment k=v ...]`` reaches the model stage, which resolves the
alerts as ``accepted`` and restores the breaker, and broadcasts the accept to every series task
(``Output.accepts``, on the params topic). Here each series of the model that the accept covers and
that has something to forget (an alert not inactive, or windows held aside) is rebased: its slots
forget the old normal and learn the held windows (``SeriesStore.rebase``), its alert states go
(the model stage resolved them), and the fast lane's tests of its open windows start again
against the new baselines. A task applies each accept once: its id is kept with the task's state,
so a task restored from a snapshot taken before it applies it again, one taken after does not.
"""

from __future__ import annotations

from ..contract import Operation
from .tables import SIGNALS, SeriesCore, fingerprint, segment_key

#: Accept ids a task remembers (bounded: an accept is broadcast within seconds of being issued).
KEEP = 64


class AcceptStep(SeriesCore):
    accepted: list[str]  # ids of the accepts applied, oldest first

    def accept(self, op: Operation) -> list[str]:
        """Apply one accept (once); the segment keys of the series it rebased."""
        m = self.models.get(op.model)
        if op.action != "accept" or op.command_id in self.accepted or m is None:
            return []
        self.accepted = [*self.accepted, op.command_id][-KEEP:]
        keys = {segment_key(s) for s in op.segments} if op.segments else None
        st = m.store
        done = []
        for sid in list(m.sids):
            skey = self.series_key[sid]
            if keys is not None and skey not in keys:
                continue
            states = [(sid, s) for s in (*SIGNALS, "feature") if (sid, s) in self.alert_states]
            if not states and sid not in st.held:
                continue  # nothing drifting: its baselines are the normal already
            for k in states:
                del self.alert_states[k]
                self.sent.pop(fingerprint(op.model, skey, k[1]), None)
            st.rebase(sid)
            row = st.rows.get(sid)
            for sums in m.windows._open.values():
                if row is not None and row < len(sums.ready):
                    sums.ready[row] = 0  # ceilings again, from the new baselines
                    sums.lane[row] = sums.slow[row] = 0.0
                    sums.crossed[row] = False
            done.append(skey)
        return done
