<?php
/*
 * Builds templates/cacti/postfix-agentx_cacti-package.xml.gz, the Cacti
 * package users import with Cacti's own
 *
 *   php /usr/share/cacti/cli/import_package.php --filename=FILE
 *
 * A build tool, run as root on a SCRATCH Cacti 1.2 (Debian 12's `cacti`
 * package), never on a Cacti you use:
 *
 *   php templates/cacti/build-package.php [--clean] [CACTI_SITE_DIR]
 *
 * (CACTI_SITE_DIR defaults to /usr/share/cacti/site; --clean only does step
 * 1.) It
 *  1. removes the objects of an earlier run (matched by their fixed hashes);
 *  2. creates in that Cacti, with Cacti's own library (sql_save(), the call
 *     the console's forms end in), what a user would click together: a CDEF
 *     and a GPRINT preset, one data query per templates/cacti/*.xml, a data
 *     template and a graph template for every output field
 *     (data_source_types.tsv) mapped in the data query's associated graph
 *     templates, data and graph templates for the scalars (scalars.tsv,
 *     "Get SNMP Data"), and the device template "Postfix (postfix-agentx)"
 *     linking all of them;
 *  3. exports the device template with its dependencies with Cacti's export
 *     code (lib/export.php get_item_xml(), what Console -> Export Templates
 *     writes) and wraps it, with the data query XML files as package files
 *     for resource/snmp_queries/, into a package signed as Cacti 1.2.24's
 *     import_package() checks it: with the RSA key whose public half the
 *     package carries (<publickey>). The key is made for each build and
 *     thrown away: the signature proves that the file is whole, not who
 *     made it.
 *
 * Every object gets a fixed hash (md5 of "postfix-agentx/" and its role), so
 * importing a newer package updates the templates an older one created.
 */

if (php_sapi_name() != 'cli') {
	exit(1);
}

$args  = array_slice($argv, 1);
$clean = in_array('--clean', $args, true);
$args  = array_values(array_diff($args, array('--clean')));
$site  = $args[0] ?? '/usr/share/cacti/site';
$here = __DIR__;
$out  = "$here/postfix-agentx_cacti-package.xml.gz";

chdir($site);
include("$site/include/cli_check.php");
include_once("$site/lib/export.php");
include_once("$site/lib/utility.php");

const PREFIX = 'Postfix (postfix-agentx)';

function h($role) {
	return md5('postfix-agentx/' . $role);
}

function tsv($file) {
	$rows = array();
	foreach (file($file, FILE_IGNORE_NEW_LINES) as $line) {
		if ($line === '' || $line[0] == '#') {
			continue;
		}
		$rows[] = explode("\t", $line);
	}
	return $rows;
}

function id_of($table, $hash) {
	return db_fetch_cell_prepared("SELECT id FROM $table WHERE hash = ?", array($hash));
}

function must($id, $what) {
	if (empty($id)) {
		fwrite(STDERR, "cannot save $what\n");
		exit(1);
	}
	return $id;
}

/* --- 1. remove what an earlier run created --- */

function remove_earlier() {
	$ht = id_of('host_template', h('host_template'));
	if ($ht) {
		if (db_fetch_cell_prepared('SELECT COUNT(*) FROM host WHERE host_template_id = ?', array($ht))) {
			fwrite(STDERR, "devices use the device template: run this on a scratch Cacti\n");
			exit(1);
		}
		db_execute_prepared('DELETE FROM host_template_graph WHERE host_template_id = ?', array($ht));
		db_execute_prepared('DELETE FROM host_template_snmp_query WHERE host_template_id = ?', array($ht));
		db_execute_prepared('DELETE FROM host_template WHERE id = ?', array($ht));
	}
	foreach (db_fetch_assoc("SELECT id FROM snmp_query WHERE xml_path LIKE '%/resource/snmp_queries/postfix\\_%'") as $q) {
		foreach (db_fetch_assoc_prepared('SELECT id FROM snmp_query_graph WHERE snmp_query_id = ?', array($q['id'])) as $g) {
			foreach (array('snmp_query_graph_rrd', 'snmp_query_graph_sv', 'snmp_query_graph_rrd_sv') as $t) {
				db_execute_prepared("DELETE FROM $t WHERE snmp_query_graph_id = ?", array($g['id']));
			}
		}
		db_execute_prepared('DELETE FROM snmp_query_graph WHERE snmp_query_id = ?', array($q['id']));
		db_execute_prepared('DELETE FROM snmp_query WHERE id = ?', array($q['id']));
	}
	foreach (db_fetch_assoc_prepared('SELECT id FROM graph_templates WHERE name LIKE ?', array(PREFIX . '%')) as $gt) {
		if (db_fetch_cell_prepared('SELECT COUNT(*) FROM graph_local WHERE graph_template_id = ?', array($gt['id']))) {
			fwrite(STDERR, "graphs use the graph templates: run this on a scratch Cacti\n");
			exit(1);
		}
		db_execute_prepared('DELETE FROM graph_template_input_defs WHERE graph_template_input_id IN
			(SELECT id FROM graph_template_input WHERE graph_template_id = ?)', array($gt['id']));
		db_execute_prepared('DELETE FROM graph_template_input WHERE graph_template_id = ?', array($gt['id']));
		db_execute_prepared('DELETE FROM graph_templates_item WHERE graph_template_id = ?', array($gt['id']));
		db_execute_prepared('DELETE FROM graph_templates_graph WHERE graph_template_id = ?', array($gt['id']));
		db_execute_prepared('DELETE FROM graph_templates WHERE id = ?', array($gt['id']));
	}
	foreach (db_fetch_assoc_prepared('SELECT id FROM data_template WHERE name LIKE ?', array(PREFIX . '%')) as $dt) {
		if (db_fetch_cell_prepared('SELECT COUNT(*) FROM data_local WHERE data_template_id = ?', array($dt['id']))) {
			fwrite(STDERR, "data sources use the data templates: run this on a scratch Cacti\n");
			exit(1);
		}
		db_execute_prepared('DELETE FROM data_input_data WHERE data_template_data_id IN
			(SELECT id FROM data_template_data WHERE data_template_id = ?)', array($dt['id']));
		db_execute_prepared('DELETE FROM data_template_rrd WHERE data_template_id = ?', array($dt['id']));
		db_execute_prepared('DELETE FROM data_template_data WHERE data_template_id = ?', array($dt['id']));
		db_execute_prepared('DELETE FROM data_template WHERE id = ?', array($dt['id']));
	}
	$cdef = id_of('cdef', h('cdef/per-minute'));
	if ($cdef) {
		db_execute_prepared('DELETE FROM cdef_items WHERE cdef_id = ?', array($cdef));
		db_execute_prepared('DELETE FROM cdef WHERE id = ?', array($cdef));
	}
	db_execute_prepared('DELETE FROM graph_templates_gprint WHERE hash = ?', array(h('gprint')));
}

remove_earlier();
if ($clean) {
	print "removed the objects of an earlier run\n";
	exit(0);
}

/* --- 2. create the templates --- */

$snmp_input         = db_fetch_cell("SELECT id FROM data_input WHERE hash = '3eb92bb845b9660a7445cf9740726522'");
$snmp_indexed_input = db_fetch_cell("SELECT id FROM data_input WHERE hash = 'bf566c869ac6443b0c75d1c32b5a350e'");
must($snmp_input && $snmp_indexed_input, 'the stock "Get SNMP Data" inputs (not found)');
$profile = db_fetch_cell('SELECT id FROM data_source_profiles ORDER BY `default` DESC LIMIT 1');

/* CDEF "per minute": the stored per-second rate times 60. */
$cdef = must(sql_save(array('id' => 0, 'hash' => h('cdef/per-minute'), 'system' => 0,
	'name' => PREFIX . ' - per minute'), 'cdef'), 'cdef');
foreach (array(array(4, 'CURRENT_DATA_SOURCE'), array(6, '60'), array(2, '3')) as $i => $item) {
	must(sql_save(array('id' => 0, 'hash' => h("cdef/per-minute/$i"), 'cdef_id' => $cdef,
		'sequence' => $i + 1, 'type' => $item[0], 'value' => $item[1]), 'cdef_items'), 'cdef item');
}
/* Plain numbers in legends: no SI prefix ("114 m" for 0.114). */
$gprint = must(sql_save(array('id' => 0, 'hash' => h('gprint'),
	'name' => PREFIX . ' - number', 'gprint_text' => '%8.2lf'), 'graph_templates_gprint'), 'gprint');

function color($hex) {
	return db_fetch_cell_prepared('SELECT id FROM colors WHERE hex = ?', array($hex));
}

$palette = array('00CF00', '0000FF', 'FF0000', 'FF7D00', 'A150AA', 'EA8F00', '002A97');

/* One data template with one data source. $inputs: data_input_field data_name => [t_value, value]. */
function data_template($key, $name, $ds_title, $input_id, $inputs, $ds_name, $ds_type) {
	global $profile;
	$dt = must(sql_save(array('id' => 0, 'hash' => h("dt/$key"), 'name' => $name), 'data_template'), "data template $name");
	$dtd = must(sql_save(array('id' => 0, 'local_data_template_data_id' => 0, 'local_data_id' => 0,
		'data_template_id' => $dt, 'data_input_id' => $input_id, 't_name' => '', 'name' => $ds_title,
		'name_cache' => '', 'data_source_path' => '', 't_active' => '', 'active' => 'on',
		't_rrd_step' => '', 'rrd_step' => 300, 't_data_source_profile_id' => '',
		'data_source_profile_id' => $profile), 'data_template_data'), 'data template data');
	foreach (db_fetch_assoc_prepared("SELECT id, data_name FROM data_input_fields
		WHERE data_input_id = ? AND input_output = 'in'", array($input_id)) as $f) {
		$v = $inputs[$f['data_name']] ?? array('', '');
		db_execute_prepared('REPLACE INTO data_input_data (data_input_field_id, data_template_data_id, t_value, value)
			VALUES (?, ?, ?, ?)', array($f['id'], $dtd, $v[0], $v[1]));
	}
	$rrd = must(sql_save(array('id' => 0, 'hash' => h("dt/$key/rrd"), 'local_data_template_rrd_id' => 0,
		'local_data_id' => 0, 'data_template_id' => $dt, 't_rrd_maximum' => '', 'rrd_maximum' => 'U',
		't_rrd_minimum' => '', 'rrd_minimum' => 0, 't_rrd_heartbeat' => '', 'rrd_heartbeat' => 600,
		't_data_source_type_id' => '', 'data_source_type_id' => ($ds_type == 'COUNTER' ? 2 : 1),
		't_data_source_name' => '', 'data_source_name' => $ds_name, 't_data_input_field_id' => '',
		'data_input_field_id' => 0), 'data_template_rrd'), 'data template rrd');
	return array($dt, $rrd);
}

/* A graph template drawing $series: [rrd id, legend, per_minute] each. */
function graph_template($key, $name, $title, $label, $series) {
	global $cdef, $gprint, $palette;
	$gt = must(sql_save(array('id' => 0, 'hash' => h("gt/$key"), 'name' => $name, 'multiple' => '',
		'test_source' => ''), 'graph_templates'), "graph template $name");
	$graph = db_fetch_row('SELECT * FROM graph_templates_graph
		WHERE local_graph_id = 0 ORDER BY id LIMIT 1');
	foreach (array_keys($graph) as $col) {
		if (substr($col, 0, 2) == 't_') {
			$graph[$col] = '';
		}
	}
	$graph = array_merge($graph, array('id' => 0, 'local_graph_template_graph_id' => 0, 'local_graph_id' => 0,
		'graph_template_id' => $gt, 'image_format_id' => 1, 'title' => $title, 'title_cache' => '',
		'height' => 200, 'width' => 700, 'upper_limit' => 100, 'lower_limit' => 0, 'vertical_label' => $label,
		'slope_mode' => 'on', 'auto_scale' => 'on', 'auto_scale_opts' => 2, 'auto_scale_log' => '',
		'scale_log_units' => '', 'auto_scale_rigid' => '', 'auto_padding' => 'on', 'base_value' => 1000,
		'grouping' => '', 'unit_value' => '', 'unit_exponent_value' => '', 'alt_y_grid' => '',
		't_title' => 'on'));
	must(sql_save($graph, 'graph_templates_graph'), 'graph template graph');
	$seq = 1;
	foreach ($series as $i => $s) {
		list($rrd, $legend, $per_minute) = $s;
		$common = array('id' => 0, 'local_graph_template_item_id' => 0, 'local_graph_id' => 0,
			'graph_template_id' => $gt, 'task_item_id' => $rrd, 'alpha' => 'FF', 'line_width' => 0,
			'dashes' => '', 'dash_offset' => '', 'cdef_id' => ($per_minute ? $cdef : 0), 'vdef_id' => 0,
			'shift' => '', 'textalign' => '', 'value' => '', 'gprint_id' => $gprint);
		$items = array(
			array('color_id' => color($palette[$i % count($palette)]),
				'graph_type_id' => (count($series) == 1 ? GRAPH_ITEM_TYPE_AREA : GRAPH_ITEM_TYPE_LINE2),
				'line_width' => (count($series) == 1 ? 0 : 2),
				'consolidation_function_id' => 1, 'text_format' => $legend, 'hard_return' => ''),
			array('color_id' => 0, 'graph_type_id' => GRAPH_ITEM_TYPE_GPRINT, 'consolidation_function_id' => 4,
				'text_format' => 'Current:', 'hard_return' => ''),
			array('color_id' => 0, 'graph_type_id' => GRAPH_ITEM_TYPE_GPRINT, 'consolidation_function_id' => 1,
				'text_format' => 'Average:', 'hard_return' => ''),
			array('color_id' => 0, 'graph_type_id' => GRAPH_ITEM_TYPE_GPRINT, 'consolidation_function_id' => 3,
				'text_format' => 'Maximum:', 'hard_return' => 'on'),
		);
		$ids = array();
		foreach ($items as $j => $item) {
			$ids[] = must(sql_save(array_merge($common, $item, array('hash' => h("gt/$key/$i/$j"),
				'sequence' => $seq++)), 'graph_templates_item'), 'graph item');
		}
		/* The "Data Source" graph item input the console creates for each data source. */
		$input = must(sql_save(array('id' => 0, 'hash' => h("gt/$key/$i/input"), 'graph_template_id' => $gt,
			'name' => "Data Source [$legend]", 'description' => '', 'column_name' => 'task_item_id'),
			'graph_template_input'), 'graph template input');
		foreach ($ids as $item_id) {
			db_execute_prepared('REPLACE INTO graph_template_input_defs (graph_template_input_id, graph_template_item_id)
				VALUES (?, ?)', array($input, $item_id));
		}
	}
	return $gt;
}

$host_graphs  = array();
$host_queries = array();

/* Scalars: "Get SNMP Data", OID fixed in the template. */
$graphs = array();
foreach (tsv("$here/scalars.tsv") as $r) {
	list($graph, $label, $ds_name, $object, $oid, $type, $legend) = $r;
	list($dt, $rrd) = data_template("scalar/$object", PREFIX . " - $object", "|host_description| - Postfix $legend",
		$snmp_input, array('oid' => array('', $oid)), $ds_name, $type);
	$graphs[$graph]['label'] = $label;
	$graphs[$graph]['series'][] = array($rrd, $legend, $type == 'COUNTER');
}
foreach ($graphs as $graph => $g) {
	$host_graphs[] = graph_template("scalar/$graph", PREFIX . " - $graph", "|host_description| - Postfix $graph",
		$g['label'], $g['series']);
}

/* Tables: one data query per XML file, one data/graph template per output field. */
$fields = tsv("$here/data_source_types.tsv");
foreach (glob("$here/postfix_*.xml") as $xml_file) {
	$file = basename($xml_file);
	$xml  = simplexml_load_file($xml_file);
	$qname = (string) $xml->name;
	$short = ucfirst(trim(str_replace(array('Postfix ', '(postfix-agentx)'), '', $qname)));
	$name_field = explode(':', (string) $xml->index_order)[0];
	$q = must(sql_save(array('id' => 0, 'hash' => h("dq/$file"),
		'xml_path' => "<path_cacti>/resource/snmp_queries/$file", 'name' => $qname,
		'description' => (string) $xml->description, 'graph_template_id' => 0,
		'data_input_id' => $snmp_indexed_input), 'snmp_query'), "data query $file");
	$host_queries[] = $q;
	foreach ($fields as $f) {
		list($ffile, $field, $object, $type, $label) = $f;
		if ($ffile != $file) {
			continue;
		}
		$fname = (string) $xml->fields->$field->name;
		$title = "|host_description| - Postfix $short $fname - |query_$name_field|";
		list($dt, $rrd) = data_template("dq/$file/$field", PREFIX . " - $short - $fname", $title, $snmp_indexed_input,
			array('index_type' => array('on', ''), 'index_value' => array('on', ''), 'output_type' => array('on', '')),
			substr($field, 0, 19), $type);
		$per_minute = ($type == 'COUNTER' && substr($label, -strlen('per minute')) == 'per minute');
		$gt = graph_template("dq/$file/$field", PREFIX . " - $short - $fname", $title, $label,
			array(array($rrd, $fname, $per_minute)));
		$sqg = must(sql_save(array('id' => 0, 'hash' => h("dq/$file/$field/graph"), 'snmp_query_id' => $q,
			'name' => "$fname ($object)", 'graph_template_id' => $gt), 'snmp_query_graph'), 'snmp query graph');
		db_execute_prepared('REPLACE INTO snmp_query_graph_rrd (snmp_query_graph_id, data_template_id,
			data_template_rrd_id, snmp_field_name) VALUES (?, ?, ?, ?)', array($sqg, $dt, $rrd, $field));
		must(sql_save(array('id' => 0, 'hash' => h("dq/$file/$field/graph/sv"), 'snmp_query_graph_id' => $sqg,
			'sequence' => 1, 'field_name' => 'title', 'text' => $title), 'snmp_query_graph_sv'), 'suggested title');
		must(sql_save(array('id' => 0, 'hash' => h("dq/$file/$field/graph/rrd_sv"), 'snmp_query_graph_id' => $sqg,
			'data_template_id' => $dt, 'sequence' => 1, 'field_name' => 'name', 'text' => $title),
			'snmp_query_graph_rrd_sv'), 'suggested name');
	}
}

$ht = must(sql_save(array('id' => 0, 'hash' => h('host_template'), 'name' => PREFIX, 'class' => 'unix'),
	'host_template'), 'device template');
foreach ($host_graphs as $gt) {
	db_execute_prepared('REPLACE INTO host_template_graph (host_template_id, graph_template_id) VALUES (?, ?)', array($ht, $gt));
}
foreach ($host_queries as $q) {
	db_execute_prepared('REPLACE INTO host_template_snmp_query (host_template_id, snmp_query_id) VALUES (?, ?)', array($ht, $q));
}

/* --- 3. export and package --- */

$template_xml = get_item_xml('host_template', $ht, true);
if (strpos($template_xml, 'hash_') === false) {
	fwrite(STDERR, "Cacti exported nothing\n");
	exit(1);
}

$key = openssl_pkey_new(array('private_key_bits' => 2048, 'private_key_type' => OPENSSL_KEYTYPE_RSA));
$public_key = openssl_pkey_get_details($key)['key'];

function sign($data) {
	global $key;
	openssl_sign($data, $signature, $key, OPENSSL_ALGO_SHA256);
	return base64_encode($signature);
}

function file_entry($name, $data, $type = '') {
	$x  = "       <file>\n";
	$x .= "           <name>$name</name>\n";
	if ($type != '') {
		$x .= "           <type>$type</type>\n";
	} else {
		$x .= '           <opath>' . htmlspecialchars("<path_cacti>/$name") . "</opath>\n";
	}
	$x .= '           <data>' . base64_encode($data) . "</data>\n";
	$x .= '           <filesignature>' . sign($data) . "</filesignature>\n";
	$x .= "       </file>\n";
	return $x;
}

$version = trim(shell_exec('cd ' . escapeshellarg($here) . " && sed -n 's/^version = \"\\(.*\\)\"/\\1/p' ../../Cargo.toml | head -n 1"));
$info = array(
	'name'         => PREFIX,
	'author'       => 'postfix-agentx',
	'homepage'     => '',
	'email'        => '',
	'description'  => 'Postfix statistics served by the postfix-agentx AgentX subagent (POSTFIX-MIB): message flow, queues, daemons, rejects, deliveries, probes, certificates',
	'class'        => 'linux',
	'tags'         => 'postfix mail snmp',
	'installation' => 'Add the device template Postfix (postfix-agentx) to the host that runs snmpd with postfix-agentx',
	'version'      => $version,
	'copyright'    => 'MIT OR Apache-2.0',
);

$xml  = "<xml>\n   <info>\n";
foreach ($info as $k => $v) {
	$xml .= "     <$k>" . htmlspecialchars($v) . "</$k>\n";
}
$xml .= "   </info>\n   <directories>\n       <directory>resource/snmp_queries</directory>\n   </directories>\n   <files>\n";
foreach (glob("$here/postfix_*.xml") as $xml_file) {
	$xml .= file_entry('resource/snmp_queries/' . basename($xml_file), file_get_contents($xml_file));
}
$xml .= file_entry('postfix-agentx.xml', $template_xml, 'template');
$xml .= "   </files>\n";
$xml .= '   <publickeyname>' . base64_encode('postfix-agentx package build (key made for this build)') . "</publickeyname>\n";
$xml .= '   <publickey>' . base64_encode($public_key) . "</publickey>\n";
$unsigned = $xml . "   <signature></signature>\n</xml>\n";
$xml .= '   <signature>' . sign($unsigned) . "</signature>\n</xml>\n";

file_put_contents($out, gzencode($xml, 9));
/* gzencode writes no name and no time: the same input gives the same bytes but for the signatures. */
print "wrote $out: " . count($host_queries) . ' data queries, ' . count($host_graphs) . ' scalar graph templates, '
	. db_fetch_cell_prepared('SELECT COUNT(*) FROM graph_templates WHERE name LIKE ?', array(PREFIX . '%')) . " graph templates in all\n";
