package qupath.ext.stimage.core;

import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/**
 * Reads option maps as scripts write them: Groovy gives {@code String} or {@code GString}
 * (any {@link CharSequence}), {@code Integer}, {@code BigDecimal} (any {@link Number}),
 * {@code Boolean} and {@code List}; numbers and booleans may also come as text. Unknown keys are
 * errors, so a typo never silently falls back to a default (as in the protocol).
 */
final class OptionValues {
    private final String what;
    private final Map<String, Object> values = new LinkedHashMap<>();

    OptionValues(String what, Map<String, ?> map, Collection<String> allowed) {
        this.what = what;
        if (map == null) {
            return;
        }
        Set<String> unknown = new LinkedHashSet<>();
        for (Map.Entry<String, ?> e : map.entrySet()) {
            String k = String.valueOf(e.getKey());
            if (!allowed.contains(k)) {
                unknown.add(k);
            }
            values.put(k, e.getValue());
        }
        if (!unknown.isEmpty()) {
            throw new IllegalArgumentException(what + ": unknown option" + (unknown.size() > 1 ? "s " : " ")
                    + unknown + "; the options are " + allowed);
        }
    }

    boolean has(String key) {
        return values.get(key) != null;
    }

    String string(String key) {
        Object v = values.get(key);
        if (v == null) {
            return null;
        }
        if (!(v instanceof CharSequence)) {
            throw new IllegalArgumentException(what + ": option '" + key + "' must be text; got " + describe(v));
        }
        String s = v.toString().trim();
        return s.isEmpty() ? null : s;
    }

    Double number(String key) {
        Object v = values.get(key);
        if (v == null) {
            return null;
        }
        if (v instanceof Number) {
            return ((Number) v).doubleValue();
        }
        if (v instanceof CharSequence) {
            String s = v.toString().trim();
            if (s.isEmpty()) {
                return null;
            }
            try {
                return Double.parseDouble(s);
            } catch (NumberFormatException e) {
                // below
            }
        }
        throw new IllegalArgumentException(what + ": option '" + key + "' must be a number; got " + describe(v));
    }

    Integer integer(String key) {
        Double d = number(key);
        if (d == null) {
            return null;
        }
        if (d != Math.rint(d) || Math.abs(d) > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(what + ": option '" + key + "' must be a whole number; got " + d);
        }
        return d.intValue();
    }

    Boolean bool(String key) {
        Object v = values.get(key);
        if (v == null) {
            return null;
        }
        if (v instanceof Boolean) {
            return (Boolean) v;
        }
        if (v instanceof CharSequence) {
            String s = v.toString().trim().toLowerCase(Locale.ROOT);
            if (s.equals("true") || s.equals("false")) {
                return Boolean.valueOf(s);
            }
        }
        throw new IllegalArgumentException(what + ": option '" + key + "' must be true or false; got " + describe(v));
    }

    /** A list of names: a list or array of texts, or one text with names separated by commas or spaces. */
    List<String> names(String key) {
        Object v = values.get(key);
        if (v == null) {
            return null;
        }
        List<String> out = new ArrayList<>();
        if (v instanceof CharSequence) {
            out.addAll(parseNames(v.toString()));
        } else if (v instanceof Collection || v instanceof Object[]) {
            Collection<?> c = v instanceof Collection ? (Collection<?>) v : List.of((Object[]) v);
            for (Object o : c) {
                if (!(o instanceof CharSequence)) {
                    throw new IllegalArgumentException(what + ": option '" + key + "' must list names as text; got "
                            + describe(o));
                }
                String s = o.toString().trim();
                if (!s.isEmpty()) {
                    out.add(s);
                }
            }
        } else {
            throw new IllegalArgumentException(what + ": option '" + key + "' must be a list of names or a "
                    + "comma-separated text; got " + describe(v));
        }
        return out.isEmpty() ? null : dedupe(out);
    }

    /**
     * @param text names separated by commas, semicolons or white space
     * @return the names, in order, without duplicates or empty entries
     */
    static List<String> parseNames(String text) {
        List<String> out = new ArrayList<>();
        if (text == null) {
            return out;
        }
        for (String s : text.split("[,;\\s]+")) {
            if (!s.isEmpty()) {
                out.add(s);
            }
        }
        return dedupe(out);
    }

    private static List<String> dedupe(List<String> names) {
        return new ArrayList<>(new LinkedHashSet<>(names));
    }

    static void range(String what, String key, double v, double min, double max) {
        if (!(v >= min && v <= max)) {
            throw new IllegalArgumentException(what + ": option '" + key + "' must lie in [" + fmt(min) + ", "
                    + fmt(max) + "]; got " + fmt(v));
        }
    }

    static String fmt(double v) {
        return v == Math.rint(v) && Math.abs(v) < 1e15 ? String.valueOf((long) v) : String.valueOf(v);
    }

    private static String describe(Object v) {
        return v.getClass().getSimpleName() + " " + v;
    }
}
