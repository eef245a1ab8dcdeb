"""Shared by every test folder: with pytest's default (prepend) import mode, loading this file puts ``tests`` on
``sys.path``, so ``tests/ros`` and ``tests/hil`` import :mod:`node_process` even when run on their own."""
