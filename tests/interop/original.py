"""Behaves as the original Python service did on the wire and in Redis, with the real
rocketmq-python-client, for the mixed-fleet tests (tests/mixed-fleet.test.ts):

- it keeps a task's status only as the string `task:{id}:status` (queued, running, done) with a TTL;
- its request message is {"task_id", "user_id", "payload", "action": "generate_profile"}, tag
  ProfileGen, key = task id; its result message is {"task_id", "user_id", "result": {...}}, tag
  ProfileResult, key = task id, with no status field;
- its workers' consumer group is GID_AGENT_PYTHON unless MQ_GROUP_AGENT says otherwise;
- json.dumps as it wrote it (ASCII escapes, spaces after separators).

  python original.py produce N   sends N tasks as the original API did; prints {"task_id": ...} lines
  python original.py work        a worker as the original's: prints {"event": "running"|"done", ...}
                                 lines; stops on SIGTERM or when stdin closes
  python original.py serve PORT  the original's HTTP API: POST /tasks answers 200 {"task_id", "status"},
                                 GET /tasks/{id} reads the status string; prints {"event": "listening"}

Environment: REDIS_URL, REDIS_PREFIX (the original had none; the tests give each run its own),
MQ_ENDPOINT, MQ_TOPIC_REQUEST, MQ_TOPIC_RESULT, MQ_GROUP_AGENT, AGENT_DELAY_MS, TASK_TTL_SECONDS.
"""

import json
import os
import re
import signal
import sys
import threading
import time
import uuid

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import redis
from rocketmq import (ClientConfiguration, Credentials, FilterExpression,
                      Message, Producer, SimpleConsumer)

ENV = os.environ
PREFIX = ENV.get("REDIS_PREFIX", "")
TTL = int(ENV.get("TASK_TTL_SECONDS", "86400"))
REQUEST_TOPIC = ENV.get("MQ_TOPIC_REQUEST", "TopicTest")
RESULT_TOPIC = ENV.get("MQ_TOPIC_RESULT", "TopicResult")
GROUP = ENV.get("MQ_GROUP_AGENT") or "GID_AGENT_PYTHON"


def say(**fields):
    print(json.dumps(fields), flush=True)


def status_key(task_id):
    return f"{PREFIX}task:{task_id}:status"


def config():
    return ClientConfiguration(ENV.get("MQ_ENDPOINT", "127.0.0.1:8081"), Credentials())


def message(topic, tag, key, body):
    m = Message()
    m.topic = topic
    m.tag = tag
    m.keys = key
    m.body = json.dumps(body).encode("utf-8")
    return m


def produce(n):
    r = redis.Redis.from_url(ENV["REDIS_URL"])
    producer = Producer(config(), (REQUEST_TOPIC,))
    producer.startup()
    try:
        for i in range(n):
            task_id = str(uuid.uuid4())
            r.set(status_key(task_id), "queued", ex=TTL)
            body = {"task_id": task_id, "user_id": f"py-user-{i}", "payload": f"机械键盘降价了 {i}", "action": "generate_profile"}
            producer.send(message(REQUEST_TOPIC, "ProfileGen", task_id, body))
            say(task_id=task_id)
    finally:
        producer.shutdown()


def work():
    r = redis.Redis.from_url(ENV["REDIS_URL"])
    delay = int(ENV.get("AGENT_DELAY_MS", "1000")) / 1000
    producer = Producer(config(), (RESULT_TOPIC,))
    producer.startup()
    consumer = SimpleConsumer(config(), GROUP, {REQUEST_TOPIC: FilterExpression("ProfileGen")}, await_duration=5)
    consumer.startup()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    say(event="ready", group=GROUP)
    try:
        while not stop.is_set():
            try:
                received = consumer.receive(16, 30)
            except Exception as e:  # an empty long poll can end in an error: poll again
                if "MESSAGE_NOT_FOUND" not in str(e) and "no new message" not in str(e).lower():
                    say(event="receive_error", error=str(e)[:300])
                continue
            for m in received:
                task = json.loads(m.body.decode("utf-8"))
                task_id = task["task_id"]
                r.set(status_key(task_id), "running", ex=TTL)
                say(event="running", task_id=task_id)
                time.sleep(delay)
                result = {"tags": ["键盘", "python"], "score": 7, "reason": f"original worker: {task['payload'][:20]}"}
                producer.send(message(RESULT_TOPIC, "ProfileResult", task_id,
                                      {"task_id": task_id, "user_id": task["user_id"], "result": result}))
                say(event="done", task_id=task_id)
                r.set(status_key(task_id), "done", ex=TTL)
                consumer.ack(m)
    finally:
        consumer.shutdown()
        producer.shutdown()


def serve(port):
    r = redis.Redis.from_url(ENV["REDIS_URL"])
    producer = Producer(config(), (REQUEST_TOPIC,))
    producer.startup()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self, status, body):
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            if self.path != "/tasks":
                return self.answer(404, {"detail": "Not Found"})
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
            task_id = str(uuid.uuid4())
            r.set(status_key(task_id), "queued", ex=TTL)
            request = {"task_id": task_id, "user_id": body["user_id"], "payload": body["content"], "action": "generate_profile"}
            producer.send(message(REQUEST_TOPIC, "ProfileGen", task_id, request))
            self.answer(200, {"task_id": task_id, "status": "queued"})

        def do_GET(self):
            m = re.fullmatch(r"/tasks/([^/]+)", self.path)
            status = r.get(status_key(m.group(1))) if m else None
            if status is None:
                return self.answer(404, {"detail": "Task not found"})
            self.answer(200, {"task_id": m.group(1), "status": status.decode()})

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    threading.Thread(target=lambda: (sys.stdin.read(), server.shutdown()), daemon=True).start()
    say(event="listening", port=port)
    try:
        server.serve_forever()
    finally:
        producer.shutdown()


if __name__ == "__main__":
    if sys.argv[1:2] == ["produce"]:
        produce(int(sys.argv[2]))
    elif sys.argv[1:2] == ["work"]:
        work()
    elif sys.argv[1:2] == ["serve"]:
        serve(int(sys.argv[2]))
    else:
        sys.exit(__doc__)
