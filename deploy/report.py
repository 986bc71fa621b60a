"""The camera summary: what ``edgeft camera`` prints on exit, writes with ``--summary`` and
serves at ``/summary``."""

from __future__ import annotations


def build_summary(loop) -> dict:
    """The summary dict of a :class:`deploy.loop.CameraLoop` (safe to call while it runs).

    ``read`` counts frames received from the source, ``frames`` those classified,
    ``dropped`` those replaced by a newer one before the loop took them (newest-frame
    policy); ``outages`` the stream's gaps (see :class:`deploy.stats.OutageLog`).
    """
    s = loop.grabber.stats
    elapsed = (loop.t_last - loop.t_first) if loop.frames > 1 else None
    lat = loop.stats.summary()
    lat["frame_time"] = loop.frame_time.summary()
    lat["age"] = loop.age.summary()
    out = {
        "frames": loop.frames,
        "read": s.read,
        "dropped": s.dropped,
        "reconnects": s.reconnects,
        "losses": s.losses,
        "outages": s.outages.summary(),
        "loops": s.loops,
        "end": loop.end,
        "elapsed_s": None if elapsed is None else round(elapsed, 3),
        "fps": round((loop.frames - 1) / elapsed, 2) if elapsed else None,
        "backend": loop.slot.active.clf.describe(),
        "model": loop.slot.active.info(),
        "swaps": loop.slot.summary(),
        "source": loop.src.describe(),
        "decoder": loop.src.opened_with,
        "latency_ms": lat,
    }
    if loop.src.opened_with == "gstreamer":
        out["pipeline"] = loop.src.pipeline
    if loop.invalid:
        out["invalid_outputs"] = loop.invalid
    if loop.http_summary is not None:
        out["http"] = loop.http_summary()
    overhead = _overhead(loop)
    if overhead:
        out["overhead"] = overhead
    if s.notes or loop.grabber.error:
        out["notes"] = [*s.notes, *([loop.grabber.error] if loop.grabber.error else [])]
    return out


def _overhead(loop) -> dict | None:
    ft, inf = loop.frame_time.mean, loop.stats.mean("inference")
    if not ft:
        return None
    cap, pre, post = (loop.stats.mean(k) for k in ("capture", "preprocess", "post"))
    out = {
        # what the loop costs above pure inference, as measured
        "share": round(max(0.0, 1 - inf / ft), 4),
        "wait_share": round(loop.stats.mean("wait") / ft, 4),
        # what capture + preprocess + post would cost if they ran in this loop
        "serial_share": round((cap + pre + post) / (cap + pre + inf + post), 4),
    }
    if loop.src.live:
        out["note"] = "live source: waiting for the camera is idle time, not overhead"
    return out


def format_summary(sm: dict) -> str:
    """The summary as the lines printed to stderr on exit."""
    fps = f"{sm['fps']:.1f} fps" if sm["fps"] else "- fps"
    lines = [
        f"{sm['frames']} frames in {sm['elapsed_s'] or 0:.2f} s ({fps}); read {sm['read']}, "
        f"dropped {sm['dropped']}, reconnects {sm['reconnects']}; ended: {sm['end']}"
    ]
    o = sm["outages"]
    if o["count"] or o.get("ongoing_since"):
        lines.append(
            f"  outages: {o['count']}, {o['total_s']:.1f} s in all (longest {o['longest_s']:.1f} s), "
            f"{o['reconnect_attempts']} reconnect attempts"
        )
    sw = sm["swaps"]
    if any(sw[k] for k in ("swapped", "refused", "rolled_back")):
        lines.append(
            f"  model updates: {sw['swapped']} swapped, {sw['confirmed']} confirmed, "
            f"{sw['rolled_back']} rolled back, {sw['refused']} refused; serving "
            f"{sm['model']['bundle']} ({sm['model']['sha256'][:12]})"
        )
    lines.append(f"  {'stage (ms)':<12}{'p50':>9}{'p90':>9}{'p99':>9}{'mean':>9}")
    for name, st in sm["latency_ms"].items():
        if st.get("n"):
            lines.append(
                f"  {name:<12}" + "".join(f"{st[k]:>9.3f}" for k in ("p50", "p90", "p99", "mean"))
            )
    if "overhead" in sm:
        o = sm["overhead"]
        lines.append(
            f"  overhead over inference: {100 * o['share']:.1f}% of frame time "
            f"(waiting {100 * o['wait_share']:.1f}%; run serially capture+preprocess+post "
            f"would be {100 * o['serial_share']:.1f}%)" + (f"; {o['note']}" if "note" in o else "")
        )
    if "http" in sm:
        h = sm["http"]
        lines.append(
            f"  http: {h['requests']} requests, {h['disconnects']} client disconnects, "
            f"{h['errors']} errors, {h['refused']} refused, at most {h['connections_max']} connections"
        )
    return "\n".join(lines)
