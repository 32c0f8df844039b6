"""What conftest knows about the test being run, for helper modules imported later
(browser.py may be imported inside a test, after that test's setup)."""

#: whether the running test is marked browser (set by conftest.pytest_runtest_setup)
marked_browser = False
