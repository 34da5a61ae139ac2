package qupath.ext.stimage.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The real {@code stimage serve} of the repository's {@code .venv} for the live tests: started on a
 * free loopback port with its output in a log file, waited for until it answers hello, stopped at
 * the end. Tests are skipped (not failed) when live tests are off ({@code -Dstimage.live=false}) or
 * the venv has no {@code stimage}. {@code -Dstimage.model=DIR} serves that model bundle.
 */
public final class LiveServer implements AutoCloseable {
    /** How long a server may take to load its model and answer. */
    public static final Duration START_TIMEOUT = Duration.ofSeconds(240);

    private final List<String> command;
    private final Path log;
    private final int port;
    private Process process;

    /** A hello (or any call) that fails with {@code disconnected} until the server answers. */
    @FunctionalInterface
    public interface Call<T> {
        T call() throws ServerException;
    }

    /**
     * @param log where the server's output goes (appended)
     * @param extra arguments after {@code serve --port P --device cpu --batch-size 16}
     */
    public LiveServer(Path log, List<String> extra) throws IOException {
        this.log = log;
        try (ServerSocket s = new ServerSocket(0)) {
            this.port = s.getLocalPort();
        }
        command = new ArrayList<>(List.of(program().toString(), "serve", "--port", String.valueOf(port), "--device",
                "cpu", "--batch-size", "16"));
        command.addAll(extra);
        String bundle = System.getProperty("stimage.model", "");
        if (!bundle.isBlank()) {
            command.addAll(List.of("--model", bundle));
        }
    }

    /** The venv's {@code stimage}; skips the test when live tests are off or it is missing. */
    public static Path program() {
        assumeTrue(!"false".equals(System.getProperty("stimage.live")), "live tests off (-Dstimage.live=false)");
        Path venv = Path.of(System.getProperty("stimage.venv", Fixtures.repo().resolve(".venv").toString()));
        Path stimage = venv.resolve("bin").resolve("stimage");
        assumeTrue(Files.isExecutable(stimage), "no stimage server at " + stimage + " (run scripts/setup.sh)");
        return stimage;
    }

    /** Starts (or, after it stopped, restarts) the server on the same port. */
    public LiveServer start() throws IOException {
        process = new ProcessBuilder(command).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        return this;
    }

    /** @return {@code tcp://127.0.0.1:PORT} */
    public String address() {
        return "tcp://127.0.0.1:" + port;
    }

    /** @return the running server process */
    public Process process() {
        return process;
    }

    /**
     * Repeats {@code call} until it answers: each try fails with {@code disconnected} while the server
     * loads its model. Fails the test when the server exits or does not answer within
     * {@link #START_TIMEOUT}, with the end of its log.
     */
    public <T> T await(Call<T> call) throws Exception {
        long end = System.nanoTime() + START_TIMEOUT.toNanos();
        while (true) {
            if (!process.isAlive()) {
                fail("the server exited with " + process.exitValue() + ":\n" + logTail());
            }
            try {
                return call.call();
            } catch (ServerException e) {
                assertEquals(ErrorCodes.DISCONNECTED, e.getCode(), e.getMessage() + "\n" + logTail());
                if (System.nanoTime() > end) {
                    fail("no hello within " + START_TIMEOUT + ":\n" + logTail());
                }
            }
        }
    }

    /** @return the last 40 lines of the server's log */
    public String logTail() {
        try {
            List<String> lines = Files.readAllLines(log, StandardCharsets.UTF_8);
            return String.join("\n", lines.subList(Math.max(0, lines.size() - 40), lines.size()));
        } catch (IOException e) {
            return "(no log: " + e + ")";
        }
    }

    /** Stops the server: SIGTERM, then a kill after 30 s. */
    @Override
    public void close() throws InterruptedException {
        if (process != null) {
            process.destroy();
            if (!process.waitFor(30, TimeUnit.SECONDS)) {
                process.destroyForcibly();
            }
        }
    }
}
