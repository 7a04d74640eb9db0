# One image for every part: `coupons gateway|allocator|notifier|migrate`.
# Build from the repository root: docker build -t coupons:0.1.0 .
FROM python:3.11-slim
WORKDIR /app
# The dependencies first, at the versions locked (make lock), their hashes checked: a layer
# that changes only with the lock. Then ours, on top, with no dependency of its own.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY allocator allocator
COPY notifier notifier
COPY schemas schemas
COPY runtime runtime
COPY deploy deploy
COPY bench bench
COPY cli cli
RUN pip install --no-cache-dir --no-deps . && useradd --uid 10001 --no-create-home coupons
USER 10001
# Listen on every interface inside the container (the default is 127.0.0.1).
ENV COUPONS_HOST=0.0.0.0 COUPONS_ENV=production
EXPOSE 8080 8081 8082
ENTRYPOINT ["coupons"]
CMD ["gateway"]
