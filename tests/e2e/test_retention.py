"""A bounded history: `[history] retention` deletes ended deliveries in the background, and
POST /api/prune (`relay prune`) does it by hand; nothing unfinished is ever deleted."""

from __future__ import annotations

from support import Relay, Reply, StartRelay, StartTarget, wait_until


async def _gone(relay: Relay, delivery_id: str) -> bool:
    status, _ = await relay.get(f"/history/{delivery_id}")
    return status == 404


async def test_retention_deletes_ended_deliveries_but_not_running_ones(
        start_relay: StartRelay, start_target: StartTarget) -> None:
    quick = await start_target(default=Reply(callback=None))
    silent = await start_target(default=Reply(callback=None))
    relay = await start_relay(chains=[
        {"name": "main", "targets": [{"name": "ci", "url": quick.url,
                                      "await_callback": False}]},
        {"name": "waits", "targets": [
            {"name": "ci", "url": silent.url}]}],  # awaits a callback that never comes
        history={"retention": "1s"})

    ended = await relay.push()
    assert (await relay.wait_for(ended))["state"] == "success"
    running = await relay.push(chain="waits")
    await relay.wait_for_step(running, 0, "awaiting_callback")

    await wait_until(lambda: _gone(relay, ended), timeout=20, what="the ended delivery "
                     "to be pruned")
    assert (await relay.get(f"/history/{running}"))[0] == 200
    _, metrics = await relay.get("/metrics")
    assert "relay_deliveries_pruned_total 1.0" in metrics


async def test_prune_by_hand_with_a_dry_run_first(start_relay: StartRelay,
                                                  start_target: StartTarget) -> None:
    target = await start_target(default=Reply(callback=None))
    relay = await start_relay({"url": target.url, "await_callback": False},
                              history={"retention": "0"})  # kept for ever
    ids = [await relay.push() for _ in range(3)]
    for delivery_id in ids:
        await relay.wait_for(delivery_id)

    dry = await relay.post("/api/prune", {"older_than": "1ms", "dry_run": True},
                           headers=relay.admin)
    assert dry == (200, {"count": 3, "dry_run": True})
    assert not await _gone(relay, ids[0])
    done = await relay.post("/api/prune", {"older_than": "1ms"}, headers=relay.admin)
    assert done == (200, {"count": 3, "dry_run": False})
    assert all([await _gone(relay, delivery_id) for delivery_id in ids])
    status, body = await relay.post("/api/prune", {"older_than": "soon"},
                                    headers=relay.admin)
    assert status == 422
    assert body["details"] == [{"path": "/older_than",
                                "message": 'must be an age such as "7d" or "12h"'}]
    assert (await relay.post("/api/prune", {"older_than": "1d"}))[0] == 401
