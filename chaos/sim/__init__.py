"""A simulated kube-apiserver that real kubectl accepts and that fails under floods the way real
api-servers do. Run it with `python -m chaos sim`."""
