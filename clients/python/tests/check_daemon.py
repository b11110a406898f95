"""Checks the package against a running fovead, given the values the Rust
client got for the same calls.

    python check_daemon.py EXPECTED.json

The daemon's address comes from FOVEA_CONNECT. Prints one line per check and
exits non-zero on the first failure.
"""

import json
import os
import subprocess
import sys
import textwrap

import grpc
import numpy as np

import fovea

expected = json.load(open(sys.argv[1]))
client = fovea.connect()


def check(name):
    def wrap(f):
        f()
        print("ok", name, flush=True)
        return f

    return wrap


@check("model")
def _():
    m = client.model()
    assert m.name == expected["model"]["name"], m.name
    assert [l.name for l in m.layers] == expected["model"]["layers"]
    assert m.input_size == expected["model"]["input_size"]
    conv = m.conv_layers()
    assert conv and all(l.kind == "conv" for l in conv)
    assert all(l.activation == "relu" for l in conv), conv
    assert [l.pool for l in conv] == expected["model"]["pools"], conv
    assert m.layers[0].activation == "" and m.layers[0].pool == ""
    # Every layer of the tiny VGG-style chain is a convolution reading the
    # one before it.
    assert not any(l.norm_only for l in m.layers), m.layers
    assert [l.sources for l in conv] == [(l.number - 1,) for l in conv], conv


rec = client.record(expected["image"])
layer = expected["layer"]


@check("record")
def _():
    assert rec.id == expected["recording_id"], rec.id
    assert rec.label == os.path.basename(expected["image"])
    assert rec.input.png.startswith(b"\x89PNG"), rec.input.png[:8]
    assert rec.input._repr_png_() == rec.input.png
    assert [p.class_index for p in rec.predictions] == expected["predictions"]
    # The same image from bytes, an array and a PIL-like object: the id is
    # the content hash of the encoded bytes, so bytes give the same id.
    again = client.record(open(expected["image"], "rb").read())
    assert again.id == rec.id
    from_array = client.record(np.zeros((20, 30, 3), np.uint8) + 128)
    assert from_array.raw.original_width == 30 and from_array.raw.original_height == 20
    floats = client.record(np.full((10, 12), 0.5, np.float32))
    assert floats.raw.original_width == 12


@check("feature maps")
def _():
    maps = rec.feature_maps(layer, expected["features"])
    want = np.asarray(expected["maps"], dtype=np.float32)
    assert maps.dtype == np.float32 and maps.shape == want.shape, (maps.dtype, maps.shape, want.shape)
    assert np.array_equal(maps, want)
    every = rec.feature_maps(layer)
    assert every.shape[0] == expected["depth"] and np.array_equal(every[expected["features"]], want)


@check("top")
def _():
    top = rec.top(layer, k=len(expected["top"]))
    assert [(a.feature, a.y, a.x) for a in top] == [tuple(t[:3]) for t in expected["top"]]
    assert np.allclose([a.value for a in top], [t[3] for t in expected["top"]], rtol=0, atol=0)
    distinct = rec.top(layer, k=3, distinct=True)
    assert len({a.feature for a in distinct}) == len(distinct)


@check("reconstruct")
def _():
    f, y, x = expected["top"][0][:3]
    pics = rec.reconstruct((layer, f, y, x), effective_bias=True)
    assert list(pics) == ["deconvnet", "masked", "random", "linear"], list(pics)
    for mode, want in expected["reconstructions"].items():
        got = pics[mode]
        want = np.asarray(want, dtype=np.float32)
        assert got.dtype == np.float32 and got.shape == want.shape, (mode, got.shape, want.shape)
        assert np.array_equal(got, want), mode
        assert pics.png[mode].startswith(b"\x89PNG")
        assert pics.normalization[mode].kind
    box = expected["fov"]
    assert pics.fov == fovea.Box(*box), (pics.fov, box)
    assert abs(pics.activation - expected["top"][0][3]) <= 1e-6
    # The linear identity through the package: <filter, input> + bias.
    assert abs(pics.effective_bias - expected["effective_bias"]) <= 1e-6
    one = rec.reconstruct(fovea.Neuron(layer, f, y, x), modes=["linear_filter"])
    assert list(one) == ["linear"] and np.array_equal(one["linear"], pics["linear"])
    assert pics.picture("linear")._repr_png_() == pics.png["linear"]


@check("stats")
def _():
    stats = rec.stats()
    assert [s.layer for s in stats] == expected["stats"]["layers"]
    for s, hist in zip(stats, expected["stats"]["histograms"]):
        assert s.histogram.dtype == np.int64 and s.histogram.tolist() == hist
        assert s.histogram.sum() == s.locations
        assert s.feature_fraction_active.shape == (s.features,)


other = client.record(expected["other_image"])


@check("compare patterns")
def _():
    def rows(c):
        return [
            [l.layer, l.units, l.same_state, l.active_a, l.active_b, l.active_both, l.windows, l.same_switch,
             l.mask_agreement, l.jaccard, l.switch_agreement]
            for l in c.layers
        ]

    whole = rec.compare(other)
    assert rows(whole) == expected["compare"]["whole"], rows(whole)
    assert whole.same_linear_filter is None
    f, y, x = expected["top"][0][:3]
    tree = rec.compare(other, (layer, f, y, x))
    assert rows(tree) == expected["compare"]["tree"]
    a, b, same, first = expected["compare"]["tree_neuron"]
    assert tree.neuron_active == (a, b) and tree.same_linear_filter == same
    assert tree.first_difference == (first or None)
    itself = rec.compare(rec)
    assert all(l.same_state == l.units and l.same_switch == l.windows for l in itself.layers)
    # The raw stub, as any grpcio client calls it.
    stub = fovea.v1.probe_pb2_grpc.ProbeStub(grpc.insecure_channel(os.environ["FOVEA_CONNECT"]))
    raw = stub.ComparePatterns(
        fovea.v1.probe_pb2.ComparePatternsRequest(recording_a=rec.id, recording_b=other.id)
    )
    assert [l.same_state for l in raw.layers] == [r[2] for r in expected["compare"]["whole"]]
    try:
        stub.ComparePatterns(fovea.v1.probe_pb2.ComparePatternsRequest(recording_a=rec.id, recording_b="0" * 64))
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND, e
    else:
        raise AssertionError("an unknown recording was accepted")


@check("linear region")
def _():
    f, y, x = expected["top"][0][:3]
    want = expected["region"]
    r = rec.linear_region((layer, f, y, x), "random", seed=2)
    assert (r.value, r.slope, r.direction_norm) == (want["value"], want["slope"], want["norm"])
    for got, end in ((r.forward, want["forward"]), (r.backward, want["backward"])):
        if end is None:
            assert got is None
            continue
        t, kind, l, ft, yy, xx, v = end
        assert (got.t, got.value) == (t, v)
        assert got.unit == fovea.UnitChange("switch" if kind == 2 else "relu", l, ft, yy, xx), got.unit
    seen = []
    walk = rec.linear_region((layer, f, y, x), other, max_regions=40, progress=lambda n, t: seen.append(n))
    segments = np.asarray(expected["walk"]["segments"], dtype=np.float64).reshape(-1, 5)
    assert walk.segments.dtype == np.float64 and np.array_equal(walk.segments, segments)
    assert walk.complete == expected["walk"]["complete"] and walk.line == (0.0, 1.0)
    assert seen == list(range(1, len(segments) + 1)), seen
    assert walk.ends[-1] is None or not walk.complete
    try:
        rec.linear_region((layer, f, y, x), rec)
    except fovea.InvalidArgument as e:
        assert "direction" in e.details, e.details
    else:
        raise AssertionError("a zero direction was accepted")
    try:
        rec.linear_region((layer, f, y, x), "sideways")
    except ValueError as e:
        assert "sideways" in str(e)
    else:
        raise AssertionError("an unknown direction was accepted")


@check("attribution")
def _():
    want = expected["attribute"]
    seen = []
    ig = rec.attribute("ig", steps=8, baseline="blurred", progress=lambda done, total: seen.append(done))
    assert ig.unit == want["unit"] and ig.objective == want["objective"], (ig.unit, ig.objective)
    assert ig.values.shape == (32, 32, 3) and ig.values.dtype == np.float32
    assert np.array_equal(ig.values.reshape(-1), np.asarray(want["ig"], dtype=np.float32))
    assert ig.completeness == tuple(want["completeness"]), ig.completeness
    assert seen == want["ig_progress"], seen
    cam = rec.attribute("gradcam", baseline="blurred")
    assert cam.values.shape == (32, 32) and cam.cam_layer == want["cam_layer"]
    assert np.array_equal(cam.values.reshape(-1), np.asarray(want["cam"], dtype=np.float32))
    assert cam.cam.shape == tuple(want["cam_shape"])
    assert np.array_equal(cam.cam.reshape(-1), np.asarray(want["cam_grid"], dtype=np.float32))
    assert cam.picture.png.startswith(b"\x89PNG")
    try:
        rec.attribute("gradcam", unit=99)
    except fovea.InvalidArgument as e:
        assert "unit" in e.details and "0..=4" in e.details, e.details
    else:
        raise AssertionError("unit 99 of 5 classes was accepted")
    try:
        rec.attribute("lime")
    except ValueError as e:
        assert "lime" in str(e)
    else:
        raise AssertionError("an unknown method was accepted")


@check("errors carry the code")
def _():
    try:
        rec.top("99", k=1)
    except fovea.InvalidArgument as e:
        assert e.code == grpc.StatusCode.INVALID_ARGUMENT, e.code
        assert "layer" in e.details, e.details
    else:
        raise AssertionError("layer 99 was accepted")
    try:
        rec.top(layer, k=0)
    except fovea.FoveaError as e:
        assert e.code == grpc.StatusCode.INVALID_ARGUMENT and "k" in e.details, e
    else:
        raise AssertionError("k = 0 was accepted")
    try:
        rec.reconstruct((layer, 0, 0, 0), modes=["sideways"])
    except ValueError as e:
        assert "sideways" in str(e)
    else:
        raise AssertionError("an unknown mode was accepted")
    dead = fovea.connect("127.0.0.1:9", timeout=5)
    try:
        dead.model()
    except fovea.Unavailable as e:
        assert e.code == grpc.StatusCode.UNAVAILABLE
    else:
        raise AssertionError("a dead address answered")


@check("an evicted recording is sent again")
def _():
    assert rec.drop()
    assert rec.id not in {r.recording_id for r in client.recordings()}
    assert rec.top(layer, k=1)[0].feature == expected["top"][0][0]
    assert rec.id in {r.recording_id for r in client.recordings()}


@check("maximize")
def _():
    f, y, x = expected["top"][0][:3]
    run = client.maximize((layer, f, y, x), starts=2, steps=6, seed=3, preview_every=3)
    events = list(run)
    assert [e.step for e in events][-1] == 6, [e.step for e in events]
    assert all(e.objective.shape == (2,) for e in events)
    assert any(e.previews for e in events)
    r = run.result
    assert r is not None and r.images.dtype == np.float32
    assert r.images.shape[0] == 2 and r.images.shape[-1] == 3, r.images.shape
    assert r.objective.shape == (2,) and len(r.pictures) == 2
    assert r.pictures[0].png.startswith(b"\x89PNG")


@check("visualize")
def _():
    run = client.visualize("channel(5,3) - 0.5*channel(5,1)", starts=2, steps=8, seed=1, diversity=0.01, preview_every=4)
    events = list(run)
    assert [e.step for e in events] == list(range(1, 9)), [e.step for e in events]
    r = run.result
    assert r is not None and r.images.shape == (2, 32, 32, 3), r.images.shape
    assert r.objective.shape == (2,)
    try:
        client.visualize("channel(5,99)").wait()
    except fovea.InvalidArgument as e:
        assert "objective" in e.details and "0..=7" in e.details, e.details
    else:
        raise AssertionError("channel 99 of 8 was accepted")
    try:
        client.visualize("channel(5,1)", param="dct")
    except ValueError as e:
        assert "dct" in str(e)
    else:
        raise AssertionError("an unknown parameterisation was accepted")


@check("leaving a maximization cancels it")
def _():
    f, y, x = expected["top"][0][:3]
    run = client.maximize((layer, f, y, x), steps=10000)
    for event in run:
        break
    assert run.cancelled and run.result is None


@check("Ctrl-C cancels a maximization")
def _():
    f, y, x = expected["top"][0][:3]
    script = textwrap.dedent(
        f"""
        import os, signal, fovea
        # As in an interactive session, even when the checks were started
        # with SIGINT ignored (a background job of a non-interactive shell).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        run = fovea.connect().maximize(({layer!r}, {f}, {y}, {x}), steps=10000)
        try:
            for event in run:
                os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            print("interrupted", run.cancelled, run.result is None)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "interrupted True True", (out.returncode, out.stdout, out.stderr)


print("all checks passed")
