# mfa-bot container: HTTP mode on $PORT (default 3000), or Socket Mode when SLACK_APP_TOKEN is set.
#   docker build -t mfa-bot .
#   docker run --env-file .env -p 3000:3000 -v mfa-bot-data:/data mfa-bot
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PORT=3000
WORKDIR /app

# The runtime lock only (pinned, hashed): no demo (moto), no test tools.
COPY requirements.txt .
RUN pip install --no-cache-dir --require-hashes -r requirements.txt

COPY bot/ bot/
COPY handlers/ handlers/

# Run unprivileged from the data volume: the default SQLite store (DATABASE_URL unset, empty, or
# .env.example's relative sqlite:///mfa_bot.db) is /data/mfa_bot.db whatever the env file says.
RUN useradd --create-home --uid 10001 mfabot && mkdir /data && chown mfabot /data
USER mfabot
ENV PYTHONPATH=/app DATABASE_URL=sqlite:////data/mfa_bot.db
VOLUME ["/data"]
WORKDIR /data
EXPOSE 3000

CMD ["python", "-m", "bot", "serve"]
