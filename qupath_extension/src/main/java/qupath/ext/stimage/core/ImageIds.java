package qupath.ext.stimage.core;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

/**
 * The {@code image_id} sent with tiles: the backend fits an image's stain normalisation once per
 * (model, image_id) and reuses it for all the image's tiles, whatever request they come in. It
 * must be stable for one image and differ between images: the image's name plus a short hash of
 * its server path (which names the file and the series), at most 512 characters.
 */
public final class ImageIds {
    /** The protocol's longest image_id. */
    public static final int MAX_LENGTH = 512;

    private ImageIds() {
    }

    /**
     * @param name the image's name (may be null)
     * @param serverPath the image server's path or URI (may be null)
     * @return the id
     */
    public static String of(String name, String serverPath) {
        String n = name == null || name.isBlank() ? "image" : name.strip();
        String hash = sha256(serverPath == null ? n : serverPath).substring(0, 16);
        int room = MAX_LENGTH - hash.length() - 1;
        if (n.length() > room) {
            n = n.substring(0, room);
        }
        return n + "#" + hash;
    }

    private static String sha256(String s) {
        try {
            byte[] d = MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8));
            StringBuilder sb = new StringBuilder();
            for (byte b : d) {
                sb.append(String.format("%02x", b & 0xFF));
            }
            return sb.toString();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is missing from this Java runtime", e);
        }
    }
}
