# Runtime image of the logclust sidecar: serving dependencies only (no TensorFlow),
# with the default model bundle inside the installed package.
FROM python:3.11-slim AS build
# A C compiler for the sampler's compiled loops (logclust.sidecar._sample_kernel), in this
# stage only: the runtime image gets the built wheel.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY logclust ./logclust
COPY models ./models
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 logclust
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && python -c "from logclust.sidecar.sample_compiled import compiled; assert compiled()"
USER logclust
WORKDIR /home/logclust
VOLUME ["/home/logclust/store"]
# gRPC and Prometheus metrics.
EXPOSE 50051 9090
ENTRYPOINT ["logclust", "serve", "--listen", "0.0.0.0:50051", "--store", "/home/logclust/store", "--metrics-port", "9090"]
