"""The simulated homes' devices (``simulators.devices``): the same lives for the same seed,
some drops and some low batteries in a day, and the shared devices' births, heartbeats and
``offline`` told as their broker would. Pure: no servers."""

from __future__ import annotations

from simulators.devices import HEARTBEAT_S, DeviceLives, SharedDevices, life_of

T0 = 1_700_000_000.0
DEVICES = [f"fd{i:03d}" for i in range(200)]


def test_the_same_seed_gives_the_same_lives() -> None:
    assert life_of("fd001", 7) == life_of("fd001", 7)
    assert life_of("fd001", 7) != life_of("fd001", 8)


def test_within_the_hour_some_devices_drop_and_some_run_low() -> None:
    lives = DeviceLives(DEVICES, 7, T0)
    dropped = [d for d in DEVICES if any(gone < 3600 for gone, _ in lives.lives[d].drops)]
    low = [d for d in DEVICES if lives.battery(d, T0 + 6 * 3600) < 20]
    assert 0 < len(dropped) < len(DEVICES)
    assert 0 < len(low) < len(DEVICES) / 2
    assert all(lives.battery(d, T0 + 3600) <= lives.battery(d, T0) for d in DEVICES)


def test_a_shared_device_is_born_beats_and_is_told_offline_while_away() -> None:
    lives = DeviceLives(DEVICES, 7, T0)
    device = next(d for d in DEVICES if lives.lives[d].drops)
    gone, back = lives.lives[device].drops[0]
    shared = SharedDevices(lives, [device], "leeds")
    said: list[tuple[float, bytes, bool]] = []
    t = T0
    while t < T0 + back + 2 * HEARTBEAT_S:
        said += [(t, payload, retained) for _, payload, retained in shared.due(t)]
        t += 1.0
    retained = [(payload, round(at - T0)) for at, payload, kept in said if kept]
    assert retained == [(b"online", 0), (b"offline", round(gone)), (b"online", round(back))]
    beats = [at for at, payload, kept in said if not kept]
    assert beats and all(not gone <= at - T0 < back for at in beats)
