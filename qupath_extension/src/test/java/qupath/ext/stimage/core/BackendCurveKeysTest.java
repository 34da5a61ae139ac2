package qupath.ext.stimage.core;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.zeromq.ZMQ;
import qupath.ext.stimage.client.CurveKeys;
import qupath.ext.stimage.client.StimageClient;

import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The shared clients take the CURVE keys of the extension's settings (offline: no connection is made). */
class BackendCurveKeysTest {
    private static final String ADDRESS = "tcp://127.0.0.1:5557";

    @AfterEach
    void reset() {
        Backend.setCurveKeySource(null);
        Backend.closeClients();
    }

    private static CurveKeys keys() {
        ZMQ.Curve.KeyPair server = ZMQ.Curve.generateKeyPair();
        ZMQ.Curve.KeyPair client = ZMQ.Curve.generateKeyPair();
        return CurveKeys.of(server.publicKey, client.publicKey, client.secretKey);
    }

    @Test
    void clientsUseTheKeysOfTheirSourceAndChangeWithThem() {
        assertNull(Backend.client(ADDRESS, 60).getCurveKeys(), "no source: no CURVE");
        AtomicReference<CurveKeys> current = new AtomicReference<>(keys());
        Backend.setCurveKeySource(current::get);
        StimageClient a = Backend.client(ADDRESS, 60);
        assertEquals(current.get(), a.getCurveKeys());
        assertSame(a, Backend.client(ADDRESS, 60), "same keys: the same shared client");
        current.set(keys());
        StimageClient b = Backend.client(ADDRESS, 60);
        assertNotSame(a, b, "new keys: a new client");
        assertEquals(current.get(), b.getCurveKeys());
        current.set(null);
        assertNull(Backend.client(ADDRESS, 60).getCurveKeys(), "keys cleared: no CURVE");
    }

    @Test
    void unusableKeySettingsReachTheCallerWithTheirMessage() {
        Backend.setCurveKeySource(() -> {
            throw new IllegalArgumentException("server.key: no such key file");
        });
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Backend.client(ADDRESS, 60));
        assertEquals("Invalid options", UserMessages.of(e, ADDRESS).getTitle());
        assertEquals("server.key: no such key file", UserMessages.of(e, ADDRESS).getText());
    }
}
