# The script the VM's init runs (fw_cfg opt/parley/run, measured by the
# agent on the host like app.conf): answer the thin partition ping's
# 1,000 checksummed messages over the channel pingpong.
parley-chan open pingpong || exit 1
parley-chan pong pingpong 1000 || exit 1
parley-chan close pingpong
