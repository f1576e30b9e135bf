package orun.sample;

import java.io.IOException;
import java.util.Map;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.RequestParam;
import org.springframework.web.bind.annotation.RestController;
import org.springframework.web.servlet.mvc.method.annotation.StreamingResponseBody;

/** orun's java-spring-boot sample: what the spec set up, and a stream of timed lines. */
@SpringBootApplication
@RestController
public class SampleApplication {

    @Value("${server.port}")
    private int port;

    public static void main(String[] args) {
        SpringApplication.run(SampleApplication.class, args);
    }

    @GetMapping("/")
    public Map<String, Object> index(@RequestParam(defaultValue = "world") String name) {
        return Map.of(
                "sample", "orun spring sample",
                "hello", "Hello, " + name + "!",
                "port", port,
                "app_path", System.getenv().getOrDefault("CL_APP_PATH", "?"),
                "java", System.getProperty("java.specification.version"));
    }

    /** Five lines 100 ms apart, flushed one by one: buffering would show. */
    @GetMapping("/stream")
    public StreamingResponseBody stream() {
        return out -> {
            for (int n = 1; n <= 5; n++) {
                out.write(("chunk " + n + "\n").getBytes());
                out.flush();
                try {
                    Thread.sleep(100);
                } catch (InterruptedException e) {
                    throw new IOException(e);
                }
            }
        };
    }
}
