"""The test bed: a simulated kube-apiserver, flood clients, fault injectors and scenarios.

It imports guard; guard never imports it.
"""
