// A downstream service on the official RocketMQ Java client (rocketmq-client-java 5.x), as the
// original's Java profile service was, for tests/java-client.test.ts. Run as a single-file program
// with the jars of tests/interop/pom.xml on the class path (Java 17):
//
//   java -cp <jars> Downstream.java send <endpoint> <request topic> <user id>
//       sends one request message (tag ProfileGen, key = a new task id, the original's fields);
//       prints {"task_id": ...}
//   java -cp <jars> Downstream.java receive <endpoint> <result topic> <group> <task id>...
//       reads the result topic until it has a message for each task id; parses each body with Jackson
//       and checks the original's fields and their types; prints one JSON line per message; exit 1 on
//       a message that does not hold them.
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import org.apache.rocketmq.client.apis.ClientConfiguration;
import org.apache.rocketmq.client.apis.ClientServiceProvider;
import org.apache.rocketmq.client.apis.consumer.FilterExpression;
import org.apache.rocketmq.client.apis.consumer.FilterExpressionType;
import org.apache.rocketmq.client.apis.consumer.SimpleConsumer;
import org.apache.rocketmq.client.apis.message.Message;
import org.apache.rocketmq.client.apis.message.MessageView;
import org.apache.rocketmq.client.apis.producer.Producer;

public class Downstream {
  static final ObjectMapper JSON = new ObjectMapper();

  public static void main(String[] args) throws Exception {
    ClientServiceProvider provider = ClientServiceProvider.loadService();
    ClientConfiguration config = ClientConfiguration.newBuilder().setEndpoints(args[1]).enableSsl(false).build();
    switch (args[0]) {
      case "send" -> send(provider, config, args[2], args[3]);
      case "receive" -> System.exit(receive(provider, config, args[2], args[3], Arrays.asList(args).subList(4, args.length)));
      default -> throw new IllegalArgumentException("send | receive");
    }
    System.exit(0);
  }

  static void send(ClientServiceProvider provider, ClientConfiguration config, String topic, String userId) throws Exception {
    String taskId = UUID.randomUUID().toString();
    ObjectNode body = JSON.createObjectNode()
        .put("task_id", taskId).put("user_id", userId).put("payload", "机械键盘降价了 (from Java)").put("action", "generate_profile");
    try (Producer producer = provider.newProducerBuilder().setClientConfiguration(config).setTopics(topic).build()) {
      Message message = provider.newMessageBuilder()
          .setTopic(topic).setTag("ProfileGen").setKeys(taskId).setBody(JSON.writeValueAsBytes(body)).build();
      producer.send(message);
    }
    System.out.println(JSON.createObjectNode().put("task_id", taskId));
  }

  static int receive(ClientServiceProvider provider, ClientConfiguration config, String topic, String group, List<String> ids)
      throws Exception {
    Set<String> waiting = new HashSet<>(ids);
    List<String> problems = new ArrayList<>();
    FilterExpression tag = new FilterExpression("ProfileResult", FilterExpressionType.TAG);
    try (SimpleConsumer consumer = provider.newSimpleConsumerBuilder().setClientConfiguration(config)
        .setConsumerGroup(group).setAwaitDuration(Duration.ofSeconds(5)).setSubscriptionExpressions(Map.of(topic, tag)).build()) {
      long deadline = System.currentTimeMillis() + 90_000;
      while (!waiting.isEmpty() && System.currentTimeMillis() < deadline) {
        for (MessageView m : consumer.receive(16, Duration.ofSeconds(30))) {
          ByteBuffer buf = m.getBody();
          byte[] bytes = new byte[buf.remaining()];
          buf.get(bytes);
          JsonNode body = JSON.readTree(bytes);
          String id = body.path("task_id").asText();
          List<String> wrong = check(body);
          if (!m.getTag().orElse("").equals("ProfileResult")) wrong.add("tag " + m.getTag());
          if (!m.getKeys().contains(id)) wrong.add("keys " + m.getKeys() + " lack the task id");
          ObjectNode line = JSON.createObjectNode().put("task_id", id).put("tag", m.getTag().orElse(""));
          line.putPOJO("keys", m.getKeys());
          line.put("score", body.path("result").path("score").asInt());
          line.put("status", body.path("status").asText(null));
          line.putPOJO("problems", wrong);
          System.out.println(line);
          problems.addAll(wrong);
          waiting.remove(id);
          consumer.ack(m);
        }
      }
    }
    if (!waiting.isEmpty()) problems.add("no result message for " + waiting);
    if (!problems.isEmpty()) System.err.println("problems: " + problems);
    return problems.isEmpty() ? 0 : 1;
  }

  /** The original's result fields and their JSON types; fields we added are optional and typed too. */
  static List<String> check(JsonNode b) {
    List<String> wrong = new ArrayList<>();
    if (!b.path("task_id").isTextual()) wrong.add("task_id is not a string");
    if (!b.path("user_id").isTextual()) wrong.add("user_id is not a string");
    JsonNode r = b.path("result");
    if (!r.isObject()) wrong.add("result is not an object");
    else {
      if (!r.path("tags").isArray()) wrong.add("result.tags is not an array");
      else r.path("tags").forEach(t -> { if (!t.isTextual()) wrong.add("result.tags holds a non-string"); });
      if (!r.path("score").isInt()) wrong.add("result.score is not an int");
      if (!r.path("reason").isTextual()) wrong.add("result.reason is not a string");
    }
    if (b.has("status") && !Set.of("done", "failed").contains(b.path("status").asText())) wrong.add("status " + b.get("status"));
    if (b.has("attempts") && !b.path("attempts").isInt()) wrong.add("attempts is not an int");
    if (b.has("finished_at") && !b.path("finished_at").isTextual()) wrong.add("finished_at is not a string");
    return wrong;
  }
}
