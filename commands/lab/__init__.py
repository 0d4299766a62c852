"""The lab: emulated RRAS servers and the test PKI behind their certificates."""
