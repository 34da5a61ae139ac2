package qupath.ext.stimage.core;

import com.google.gson.JsonObject;
import org.junit.jupiter.api.Test;
import qupath.ext.stimage.client.ErrorCodes;
import qupath.ext.stimage.client.ServerException;

import java.io.IOException;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.util.concurrent.CancellationException;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

class UserMessagesTest {
    private static final String ADDRESS = "tcp://127.0.0.1:5557";

    private static ServerException fromFixture(String name) throws IOException {
        JsonObject h = TestFixtures.header(name);
        return new ServerException(h.get("code").getAsString(), h.get("message").getAsString(),
                h.has("details") ? h.getAsJsonObject("details") : null);
    }

    @Test
    void backendNotRunningSaysHowToStartIt() {
        UserMessage m = UserMessages.of(new ServerException(ErrorCodes.DISCONNECTED, "no reply for 10 s"), ADDRESS);
        assertEquals("STImage backend not running", m.getTitle());
        assertEquals(UserMessage.Severity.ERROR, m.getSeverity());
        assertEquals("stimage serve", m.getCommand());
        assertTrue(m.getText().contains(ADDRESS));
        assertEquals("stimage serve --port 6000",
                UserMessages.of(new ServerException(ErrorCodes.DISCONNECTED, "x"), "tcp://localhost:6000").getCommand());
        assertTrue(UserMessages.serveCommand("tcp://gpu-box:5557").contains("--host 0.0.0.0"));
        assertTrue(UserMessages.serveCommand("tcp://gpu-box:5557").contains("gpu-box"));
    }

    @Test
    void protocolMismatchNamesBothVersions() throws IOException {
        UserMessage m = UserMessages.of(fromFixture("reply_error_unsupported_protocol"), ADDRESS);
        assertEquals("Protocol version mismatch", m.getTitle());
        assertTrue(m.getText().contains("speaks STImage protocol 1;"), m.getText());
        assertTrue(m.getText().contains("speaks protocol 1."), m.getText());
        JsonObject d = new JsonObject();
        com.google.gson.JsonArray a = new com.google.gson.JsonArray();
        a.add(2);
        a.add(3);
        d.add("server_protocols", a);
        UserMessage two = UserMessages.of(new ServerException(ErrorCodes.UNSUPPORTED_PROTOCOL, "x", d), ADDRESS);
        assertTrue(two.getText().contains("protocol 2, 3"), two.getText());
    }

    @Test
    void modelMissingKeepsTheBackendsSentence() throws IOException {
        UserMessage m = UserMessages.of(fromFixture("reply_error_unknown_model"), ADDRESS);
        assertEquals("Model missing", m.getTitle());
        assertTrue(m.getText().startsWith("No model 'lung' on this server"), m.getText());
        assertTrue(m.getCommand().startsWith("stimage serve --model"));
    }

    @Test
    void everyProtocolErrorCodeHasItsOwnMessage() throws IllegalAccessException {
        for (Field f : ErrorCodes.class.getFields()) {
            if (!Modifier.isStatic(f.getModifiers()) || f.getType() != String.class) {
                continue;
            }
            String code = (String) f.get(null);
            UserMessage m = UserMessages.of(new ServerException(code, "the reason"), ADDRESS);
            assertFalse(m.getTitle().startsWith("Backend error (") , code + " falls back to the generic message");
            assertFalse(m.getText().isBlank(), code);
        }
    }

    @Test
    void otherFailures() {
        StimageException own = new StimageException("No tissue", "none");
        assertSame(own.getUserMessage(), UserMessages.of(own, ADDRESS));
        assertEquals(UserMessage.Severity.INFO, UserMessages.of(new CancellationException(), ADDRESS).getSeverity());
        assertEquals(UserMessage.Severity.INFO,
                UserMessages.of(new ServerException(ErrorCodes.CANCELLED, "by user"), ADDRESS).getSeverity());
        assertEquals("Invalid options", UserMessages.of(new IllegalArgumentException("bad"), ADDRESS).getTitle());
        assertEquals("Could not read the image", UserMessages.of(new IOException("gone"), ADDRESS).getTitle());
        UserMessage bug = UserMessages.of(new NullPointerException("x"), ADDRESS);
        assertEquals("Unexpected error", bug.getTitle());
        assertTrue(bug.getText().contains("NullPointerException"));
        assertNull(bug.getCommand());
        assertTrue(UserMessages.of(new ServerException(ErrorCodes.INTERNAL, ""), ADDRESS).getText()
                .startsWith("The backend gave no reason."));
    }
}
