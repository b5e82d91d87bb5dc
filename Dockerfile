# Troon node image: one node = one container (DESIGN.md section 1).
#
# The build needs no network: the project and every dependency come from a wheelhouse built on
# the host and copied in.  By hand (with a registry):
#     pip wheel . -w wheelhouse && docker build -t troon-node:latest .
# Without a registry, `troon image build` (testnet/image.py) debootstraps a Debian base first
# and passes it as BASE_IMAGE.  The base must provide python3 (3.11) with the venv module.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS install
LABEL troon.stage=install
COPY wheelhouse/ /wheels/
RUN python3 -m venv /opt/troon \
 && /opt/troon/bin/python -m pip install --no-index --no-cache-dir --find-links /wheels troon \
 && /opt/troon/bin/python -m pip uninstall --yes --quiet pip setuptools \
 && find /opt/troon -type d -path '*/site-packages/numpy/*' -name tests -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
LABEL troon.stage=node
COPY --from=install /opt/troon /opt/troon
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin troon \
 && mkdir -p /data /etc/troon \
 && chown troon:troon /data
ENV PATH=/opt/troon/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TROON_CONFIG=/etc/troon/node.yaml
# The chunk store, key and bootstrap cache: give the config `data_dir: /data`.
VOLUME /data
WORKDIR /data
USER troon:troon
# Healthy = the admin API answers an authenticated GET /info.  Port and token come from the node
# config ($TROON_CONFIG, a file) or, for the token, from $TROON_ADMIN_TOKEN (the node's own rule);
# the config's admin_port must be fixed (not 0) for this to work.
HEALTHCHECK --interval=5s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os,pathlib;from node.config import load_config;from node.admin import admin_call;c=load_config(pathlib.Path(os.environ['TROON_CONFIG']));h=c.admin_host;h='127.0.0.1' if h in ('','0.0.0.0','::') else h;admin_call(h,c.admin_port,c.admin_token,'GET','/info',timeout=4.0)"]
ENTRYPOINT ["python", "-m", "node"]
CMD ["run", "--config", "/etc/troon/node.yaml"]
