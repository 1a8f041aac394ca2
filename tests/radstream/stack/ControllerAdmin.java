// An Admin client that talks to the Kafka controller listener directly (KIP-919, bootstrap.controllers),
// for tests/radstream/stack/test_kafka_controller_auth.py; run as a source file against the stack's jars:
//   java -cp '<libs>/*' ControllerAdmin.java <controller host:port> <case>...
// A case is "<action>,<user>,<password>": action "create" (an ACL: User:<grantee> ALL on every topic,
// grantee "mallory") or "describe" (all ACLs); no user: plain text without credentials, else SASL/PLAIN.
// Prints one line per case: "CASE <i> OK <detail>" or "CASE <i> REFUSED <exception class>: <message>".
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class ControllerAdmin {
  public static void main(String[] args) throws InterruptedException {
    for (int i = 1; i < args.length; i++) {
      String[] c = args[i].split(",", -1);
      Properties p = new Properties();
      p.put("bootstrap.controllers", args[0]);
      // a refused client retries until this runs out: short for the attempts the test expects refused,
      // longer for the control (describe) on a loaded machine
      p.put("default.api.timeout.ms", c[0].equals("create") ? "12000" : "30000");
      p.put("request.timeout.ms", "4000");
      p.put("reconnect.backoff.max.ms", "500");
      if (!c[1].isEmpty()) {
        p.put("security.protocol", "SASL_PLAINTEXT");
        p.put("sasl.mechanism", "PLAIN");
        p.put("sasl.jaas.config", "org.apache.kafka.common.security.plain.PlainLoginModule required username=\""
            + c[1] + "\" password=\"" + c[2] + "\";");
      }
      try (Admin admin = Admin.create(p)) {
        if (c[0].equals("create")) {
          AclBinding b = new AclBinding(new ResourcePattern(ResourceType.TOPIC, "*", PatternType.LITERAL),
              new AccessControlEntry("User:mallory", "*", AclOperation.ALL, AclPermissionType.ALLOW));
          admin.createAcls(List.of(b)).all().get();
          System.out.println("CASE " + i + " OK created");
        } else {
          int n = admin.describeAcls(AclBindingFilter.ANY).values().get().size();
          System.out.println("CASE " + i + " OK described " + n);
        }
      } catch (ExecutionException e) {
        Throwable t = e.getCause();
        System.out.println("CASE " + i + " REFUSED " + t.getClass().getSimpleName() + ": " + t.getMessage());
      } catch (RuntimeException e) {
        System.out.println("CASE " + i + " REFUSED " + e.getClass().getSimpleName() + ": " + e.getMessage());
      }
    }
  }
}
