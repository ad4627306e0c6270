"""The rolling-deploy test's pieces (tests/test_rolling_deploy.py): HAProxy from Debian's
package as a child process (``haproxy``), the gateway instances it balances (``fleet``), the
load of simulated calls (``load``) and the figures drawn from what everyone recorded
(``figures``)."""
