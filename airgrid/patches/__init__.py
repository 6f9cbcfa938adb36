"""Patches of Faust and aiokafka internals, each for one upstream defect (docs/patches.md)."""
