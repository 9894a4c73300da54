"""How reference scripts record an output: shape, sums and a strided slice (the tests compare
the slice element-wise and the sums as a check on everything between)."""
import json
import os


def summary(t, stride=37):
    flat = t.detach().double().flatten()
    return {
        "shape": list(t.shape),
        "sum": flat.sum().item(),
        "abs_sum": flat.abs().sum().item(),
        "stride": stride,
        "values": [round(v, 7) for v in flat[::stride].tolist()],
    }


def write_reference(root, file_name, data):
    path = os.path.join(root, "test", "fixtures", "reference", file_name)
    with open(path, "w") as f:
        json.dump(data, f)
        f.write("\n")
    return os.path.normpath(path)
