"""Records every image of a folder and prints its strongest neurons.

    python top_neurons.py FOLDER [--layer 13] [-k 3]
"""

import argparse
import pathlib

import fovea

parser = argparse.ArgumentParser()
parser.add_argument("folder")
parser.add_argument("--layer", help="conv layer (default the last)")
parser.add_argument("-k", type=int, default=3)
args = parser.parse_args()
client = fovea.connect()
layer = args.layer or str(client.model().conv_layers()[-1].number)
for path in sorted(pathlib.Path(args.folder).iterdir()):
    if path.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"}:
        top = client.record(path).top(layer, k=args.k, distinct=True)
        print(path.name, "  ".join(f"f{a.feature}@({a.y},{a.x})={a.value:.3g}" for a in top))
