# voicebot worker: the embedded English engine (pocketsphinx), espeak-ng for speech,
# running as an unprivileged user. Build: docker build -t voicebot .
FROM python:3.11-slim-bookworm

# espeak-ng: the text-to-speech voice (pyttsx3 drives it)
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --system --create-home --home-dir /home/voicebot --uid 10001 voicebot
WORKDIR /app
COPY pyproject.toml README.md ./
COPY voicebot ./voicebot
COPY knowledge ./knowledge
RUN pip install --no-cache-dir . && mkdir -p /data && chown voicebot /data

USER voicebot
ENV VOICEBOT_HOST=0.0.0.0 \
    VOICEBOT_PORT=8080 \
    VOICEBOT_DB=/data/voicebot.db \
    VOICEBOT_JOURNAL=/data/voicebot.journal \
    VOICEBOT_DRAIN_S=120 \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 8080
# 200 when ready; 503 while starting or draining (then the balancer sends calls elsewhere)
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('VOICEBOT_PORT', '8080') + '/healthz', timeout=2)"]
# exec form: SIGTERM reaches voicebot itself, which drains
CMD ["voicebot", "serve"]
