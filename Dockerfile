# mfa-bot container: HTTP mode on $PORT (default 3000), or Socket Mode when SLACK_APP_TOKEN is set.
#   docker build -t mfa-bot .
#   docker run --env-file .env -p 3000:3000 mfa-bot
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PORT=3000
WORKDIR /app

# The runtime lock only (pinned, hashed): no demo (moto), no test tools.
COPY requirements.txt .
RUN pip install --no-cache-dir --require-hashes -r requirements.txt

COPY bot/ bot/
COPY handlers/ handlers/

# Run unprivileged; the default SQLite store lives in a volume-friendly directory.
RUN useradd --create-home --uid 10001 mfabot && mkdir /data && chown mfabot /data
USER mfabot
ENV DATABASE_URL=sqlite:////data/mfa_bot.db
VOLUME ["/data"]
EXPOSE 3000

CMD ["python", "-m", "bot", "serve"]
