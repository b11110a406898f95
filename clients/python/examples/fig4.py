"""The paper's fig. 4 for one image: at the strongest location of the last
conv layer, the two strongest features, each reconstructed in the four
backward modes and cropped to its field of view, beside the input with that
field of view outlined.

    python fig4.py [IMAGE] [-o fig4.png] [--layer 13]

Needs a running fovead (FOVEA_CONNECT, default 127.0.0.1:50051) and
matplotlib.
"""

import argparse
import io
import pathlib
import textwrap

import matplotlib.patches as patches
import matplotlib.pyplot as plt
import numpy as np

import fovea

SAMPLE = pathlib.Path(__file__).resolve().parents[3] / "samples" / "chelsea.png"
TITLES = {"deconvnet": "deconvnet", "masked": "deconvnet + masks", "random": "masks + random weights", "linear": "linear filter"}


def figure4(client, image, layer=None):
    model = client.model()
    layer = layer or str(model.conv_layers()[-1].number)
    rec = client.record(image)
    best = rec.top(layer, k=1)[0]
    # The two strongest features at that location.
    maps = rec.feature_maps(layer)
    features = np.argsort(-maps[:, best.y, best.x])[:2]
    fig, axes = plt.subplots(2, 5, figsize=(12.5, 5.4))
    input_png = plt.imread(io.BytesIO(rec.input.png), format="png")
    for row, feature in enumerate(features):
        pics = rec.reconstruct((layer, int(feature), best.y, best.x))
        ax = axes[row, 0]
        ax.imshow(input_png)
        box = pics.fov
        ax.add_patch(patches.Rectangle((box.x0, box.y0), box.x1 - box.x0, box.y1 - box.y0, fill=False, color="yellow", lw=1.5))
        ax.set_title(f"L{layer} f{feature} at ({best.y},{best.x})\nactivation {pics.activation:.3g}", fontsize=9)
        for col, mode in enumerate(fovea.MODES, start=1):
            axes[row, col].imshow(plt.imread(io.BytesIO(pics.png[mode]), format="png"))
            axes[row, col].set_title(TITLES[mode], fontsize=9)
    for ax in axes.flat:
        ax.set_axis_off()
    norm = textwrap.fill("Each panel has its own scale; the last one: " + pics.normalization["linear"].description, 160)
    fig.suptitle(f"{model.name}, layer {layer}: the four backward modes, cropped to the field of view", fontsize=11)
    fig.text(0.5, 0.01, norm, ha="center", va="bottom", fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig, rec, features


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", nargs="?", default=str(SAMPLE))
    parser.add_argument("-o", "--out", default="fig4.png")
    parser.add_argument("--layer", help="conv layer (default the last)")
    args = parser.parse_args()
    with fovea.connect() as client:
        fig, rec, features = figure4(client, args.image, args.layer)
        fig.savefig(args.out, dpi=120)
    print(f"{args.out}: {rec.label}, features {list(map(int, features))}")


if __name__ == "__main__":
    main()
