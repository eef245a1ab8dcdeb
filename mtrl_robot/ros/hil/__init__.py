"""Hardware-in-the-loop checks shipped with the package, run by the ``hil_suite`` node (hil_test.launch.xml)."""
