package qupath.ext.stimage.client;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.zeromq.ZMQ;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Offline: the key files, in the format pyzmq's zmq.auth writes, and every bad input's message. */
class CurveKeysTest {
    @TempDir
    Path dir;

    /** A certificate file as zmq.auth.create_certificates writes it. */
    private Path cert(String name, String pub, String sec) throws Exception {
        String text = "#   ****  Generated on 2026-12-06 by pyzmq  ****\n"
                + "#   ZeroMQ CURVE " + (sec == null ? "Public" : "**Secret**") + " Certificate\n"
                + "#   Exchange securely, or use a secure mechanism to verify the contents\n\n"
                + "metadata\ncurve\n    public-key = \"" + pub + "\"\n"
                + (sec == null ? "" : "    secret-key = \"" + sec + "\"\n");
        Path p = dir.resolve(name);
        Files.writeString(p, text, StandardCharsets.UTF_8);
        return p;
    }

    @Test
    void z85IsZeroMqsEncoding() {
        // the test vector of ZeroMQ RFC 32
        byte[] bytes = {(byte) 0x86, 0x4F, (byte) 0xD2, 0x6F, (byte) 0xB5, 0x59, (byte) 0xF7, 0x5B};
        assertEquals("HelloWorld", CurveKeys.z85Encode(bytes));
        assertArrayEquals(bytes, CurveKeys.z85Decode("HelloWorld"));
        // and JeroMQ's keys
        ZMQ.Curve.KeyPair k = ZMQ.Curve.generateKeyPair();
        assertArrayEquals(ZMQ.Curve.z85Decode(k.publicKey), CurveKeys.z85Decode(k.publicKey));
        assertEquals(k.secretKey, CurveKeys.z85Encode(ZMQ.Curve.z85Decode(k.secretKey)));
    }

    @Test
    void keysFromTheFilesOfMakeKeys() throws Exception {
        ZMQ.Curve.KeyPair server = ZMQ.Curve.generateKeyPair();
        ZMQ.Curve.KeyPair client = ZMQ.Curve.generateKeyPair();
        cert("server.key", server.publicKey, null);
        cert("server.key_secret", server.publicKey, server.secretKey);
        cert("client.key", client.publicKey, null);
        cert("client.key_secret", client.publicKey, client.secretKey);
        CurveKeys k = CurveKeys.fromFolder(dir);
        assertEquals(server.publicKey, k.getServerPublicKeyZ85());
        assertEquals(client.publicKey, k.getClientPublicKeyZ85());
        assertArrayEquals(ZMQ.Curve.z85Decode(client.secretKey), k.getClientSecretKey());
        // the server key as its Z85 text, with spaces around it as pasted
        assertEquals(k, CurveKeys.load("  " + server.publicKey + "\n", dir.resolve("client.key_secret")));
        assertFalse(k.toString().contains(client.secretKey), "toString shows the secret key");
    }

    private static String message(Runnable r) {
        return assertThrows(IllegalArgumentException.class, r::run).getMessage();
    }

    @Test
    void badKeysSayWhatIsWrongAndWhatToGive() throws Exception {
        ZMQ.Curve.KeyPair server = ZMQ.Curve.generateKeyPair();
        ZMQ.Curve.KeyPair client = ZMQ.Curve.generateKeyPair();
        Path pub = cert("server.key", server.publicKey, null);
        Path sec = cert("server.key_secret", server.publicKey, server.secretKey);
        Path clientPub = cert("client.key", client.publicKey, null);
        Path clientSec = cert("client.key_secret", client.publicKey, client.secretKey);

        String m = message(() -> CurveKeys.fromFolder(dir.resolve("nope")));
        assertTrue(m.contains("no such folder") && m.contains("--make-keys"), m);
        m = message(() -> CurveKeys.load(sec.toString(), clientSec));
        assertTrue(m.contains("SECRET") && m.contains("server.key"), m);
        m = message(() -> CurveKeys.load(pub.toString(), clientPub));
        assertTrue(m.contains("holds no secret key") && m.contains("client.key_secret"), m);
        m = message(() -> CurveKeys.load(dir.resolve("missing.key").toString(), clientSec));
        assertTrue(m.contains("neither a key file nor") && m.contains("server.key"), m);
        m = message(() -> CurveKeys.load("", clientSec));
        assertTrue(m.contains("no server key given"), m);
        m = message(() -> CurveKeys.load(pub.toString(), dir.resolve("gone.key_secret")));
        assertTrue(m.contains("no such key file"), m);
        Path text = dir.resolve("notes.txt");
        Files.writeString(text, "hello\n");
        m = message(() -> CurveKeys.load(text.toString(), clientSec));
        assertTrue(m.contains("not a ZeroMQ certificate"), m);
        Path shortKey = cert("short.key", "abc", null);
        m = message(() -> CurveKeys.load(shortKey.toString(), clientSec));
        assertTrue(m.contains("40 Z85 characters") && m.contains("got 3 characters"), m);
        m = message(() -> CurveKeys.of(server.publicKey, client.publicKey, "\"" + client.secretKey.substring(1)));
        assertTrue(m.contains("the client's secret key is not a CURVE key"), m);
        // a Z85 group over 32 bits
        m = message(() -> CurveKeys.of("%%%%%" + server.publicKey.substring(5), client.publicKey, client.secretKey));
        assertTrue(m.contains("exceeds 32 bits"), m);
    }
}
