package qupath.ext.stimage.core;

import org.junit.jupiter.api.Test;

import java.math.BigDecimal;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class OptionsTest {

    @Test
    void predictDefaults() {
        PredictOptions o = PredictOptions.fromMap(null);
        assertEquals("tcp://127.0.0.1:5557", o.getServer());
        assertNull(o.getModel());
        assertNull(o.getGenes());
        assertEquals(Region.SELECTED, o.getRegion());
        assertEquals(PredictOptions.DEFAULT_BATCH_SIZE, o.getBatchSize());
        assertEquals(PredictOptions.DEFAULT_MIN_TISSUE, o.getMinTissue());
        assertEquals(600, o.getTimeoutS());
        assertNull(o.getMpp());
        assertNull(o.getLevel());
    }

    @Test
    void predictReadsWhatGroovyScriptsPass() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("server", new StringBuilder("tcp://localhost:6000"));   // a GString is a CharSequence
        m.put("genes", Arrays.asList("ERBB2", " GATA3 ", "ERBB2"));
        m.put("batchSize", new BigDecimal("16"));                   // Groovy number literals
        m.put("minTissue", new BigDecimal("0.5"));
        m.put("region", "Annotations");
        m.put("mpp", "0.69");
        m.put("model", "her2st");
        m.put("level", 0.8);
        m.put("timeout", 30);
        PredictOptions o = PredictOptions.fromMap(m);
        assertEquals("tcp://localhost:6000", o.getServer());
        assertEquals(List.of("ERBB2", "GATA3"), o.getGenes(), "trimmed, duplicates dropped");
        assertEquals(16, o.getBatchSize());
        assertEquals(0.5, o.getMinTissue());
        assertEquals(Region.ANNOTATIONS, o.getRegion());
        assertEquals(0.69, o.getMpp());
        assertEquals("her2st", o.getModel());
        assertEquals(0.8, o.getLevel());
        assertEquals(30, o.getTimeoutS());
        assertEquals(List.of("A", "B", "C"), PredictOptions.fromMap(Map.of("genes", "A, B;C")).getGenes());
        assertNull(PredictOptions.fromMap(Map.of("genes", " ")).getGenes(), "blank means all genes");
    }

    @Test
    void badOptionsAreRefusedWithTheReason() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> PredictOptions.fromMap(Map.of("batchsize", 8)));
        assertTrue(e.getMessage().contains("batchsize") && e.getMessage().contains("batchSize"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> PredictOptions.fromMap(Map.of("batchSize", 0)));
        assertThrows(IllegalArgumentException.class, () -> PredictOptions.fromMap(Map.of("batchSize", 1000)));
        assertThrows(IllegalArgumentException.class, () -> PredictOptions.fromMap(Map.of("batchSize", 2.5)));
        assertThrows(IllegalArgumentException.class, () -> PredictOptions.fromMap(Map.of("minTissue", 1.5)));
        assertThrows(IllegalArgumentException.class, () -> PredictOptions.fromMap(Map.of("level", 1)));
        assertThrows(IllegalArgumentException.class, () -> PredictOptions.fromMap(Map.of("mpp", -1)));
        assertThrows(IllegalArgumentException.class, () -> PredictOptions.fromMap(Map.of("mpp", "abc")));
        assertThrows(IllegalArgumentException.class, () -> PredictOptions.fromMap(Map.of("region", "everything")));
        assertThrows(IllegalArgumentException.class, () -> PredictOptions.fromMap(Map.of("server", "localhost:5557")));
        assertThrows(IllegalArgumentException.class, () -> PredictOptions.fromMap(Map.of("timeout", 0)));
        assertThrows(IllegalArgumentException.class, () -> PredictOptions.fromMap(Map.of("genes", List.of(1, 2))));
        assertThrows(IllegalArgumentException.class, () -> CellsOptions.fromMap(Map.of("classify", "maybe")));
        assertThrows(IllegalArgumentException.class, () -> CellsOptions.fromMap(Map.of("chunkPx", 100)));
    }

    @Test
    void explainNeedsGenesAndKnowsItsMethods() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ExplainOptions.fromMap(null));
        assertTrue(e.getMessage().contains("genes"));
        ExplainOptions o = ExplainOptions.fromMap(Map.of("genes", "ERBB2"));
        assertEquals(List.of("ERBB2"), o.getGenes());
        assertEquals("lime", o.getMethod());
        assertEquals("mean", o.getTarget());
        assertEquals(1000, o.getNumSamples());
        assertEquals(0, o.getSeed());
        assertEquals(PredictOptions.DEFAULT_MIN_TISSUE, o.getMinTissue(), "the neighbours' tissue test: Predict's");
        assertEquals(0.0, ExplainOptions.fromMap(Map.of("genes", "A", "minTissue", 0)).getMinTissue());
        assertThrows(IllegalArgumentException.class, () -> ExplainOptions.fromMap(Map.of("genes", "A", "minTissue", 2)));
        ExplainOptions p = ExplainOptions.fromMap(Map.of("genes", List.of("A"), "method", "OCCLUSION",
                "target", "p_high", "numSamples", 30, "seed", 7));
        assertEquals("occlusion", p.getMethod());
        assertEquals("p_high", p.getTarget());
        assertEquals(30, p.getNumSamples());
        assertEquals(7, p.getSeed());
        assertThrows(IllegalArgumentException.class, () -> ExplainOptions.fromMap(Map.of("genes", "A", "method", "shap")));
        assertThrows(IllegalArgumentException.class, () -> ExplainOptions.fromMap(Map.of("genes", "A", "numSamples", 5)));
        List<String> many = new java.util.ArrayList<>();
        for (int i = 0; i < 51; i++) {
            many.add("G" + i);
        }
        assertThrows(IllegalArgumentException.class, () -> ExplainOptions.fromMap(Map.of("genes", many)));
    }

    @Test
    void optionsRoundTripThroughTheirMap() {
        PredictOptions p = PredictOptions.builder().server("tcp://10.0.0.2:6000").model("m").genes("A,B")
                .region(Region.IMAGE).batchSize(8).minTissue(0.1).level(0.8).timeout(99).mpp(0.5).build();
        assertEquals(p, PredictOptions.fromMap(p.toMap()));
        CellsOptions c = CellsOptions.builder().classify(false).chunkPx(512).region(Region.ANNOTATIONS).build();
        assertEquals(c, CellsOptions.fromMap(c.toMap()));
        ExplainOptions e = ExplainOptions.builder().genes(List.of("A", "B")).method("occlusion").seed(3)
                .minTissue(0.1).build();
        assertEquals(e, ExplainOptions.fromMap(e.toMap()));
        assertFalse(p.equals(PredictOptions.fromMap(Map.of())));
        Map<String, Object> all = new HashMap<>(PredictOptions.fromMap(null).toMap());
        assertEquals(PredictOptions.KEYS.size() - 4, all.size(), "unset model, genes, level, mpp are left out: " + all);
    }

    @Test
    void scriptLinesAreGroovyThatRebuildsTheOptions() {
        PredictOptions p = PredictOptions.builder().genes(List.of("ERBB2", "GATA3")).batchSize(16).build();
        assertEquals("qupath.ext.stimage.STImage.predict(getCurrentImageData(), [server: 'tcp://127.0.0.1:5557', "
                + "genes: ['ERBB2', 'GATA3'], region: 'selected', batchSize: 16, minTissue: 0.25, timeout: 600])",
                ScriptLine.of("predict", p));
        CellsOptions c = CellsOptions.builder().mpp(0.5).build();
        assertEquals("qupath.ext.stimage.STImage.detectCells(getCurrentImageData(), [server: 'tcp://127.0.0.1:5557', "
                + "region: 'selected', classify: true, chunkPx: 1024, timeout: 600, mpp: 0.5])",
                ScriptLine.of("detectCells", c));
        assertEquals("['it\\'s', 'back\\\\slash', 'a\\nb']", ScriptLine.groovyLiteral(List.of("it's", "back\\slash", "a\nb")));
        assertEquals("[:]", ScriptLine.groovyLiteral(Map.of()));
        assertEquals("['odd key': 1]", ScriptLine.groovyLiteral(Map.of("odd key", 1)));
        assertEquals("2", ScriptLine.groovyLiteral(2.0));
        assertEquals("null", ScriptLine.groovyLiteral(null));
        assertThrows(IllegalArgumentException.class, () -> ScriptLine.groovyLiteral(Double.NaN));
    }
}
