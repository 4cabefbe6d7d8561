"""Print a cross-score matrix (crossscore.py output) as mean nats per character,
rows = scorer, columns = generator: `python benchmarks/research/matrix.py OUT.npz`."""
import numpy as np, sys
d = np.load(sys.argv[1]); names = list(d["names"]); LL = d["LL"]; C = d["chars"]
L = LL.sum((2, 3)) / C.sum((1, 2))[None, :]
print("rows=scorer, cols=generator, nats/char")
print("      " + " ".join(f"{n[:7]:>7}" for n in names))
for i, n in enumerate(names):
    print(f"{n[:6]:>6}" + " ".join(f"{L[i,j]:7.3f}" for j in range(len(names))))
print("chars/sample", C.mean((1,2)))
