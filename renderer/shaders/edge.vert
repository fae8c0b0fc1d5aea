#version 330
// Inverted-hull outline: the back faces, pushed out along the screen-space
// normal by a constant number of pixels times the material edge size.
uniform vec4 u_frame;     // centre x, centre y, 1/half, unused
uniform vec2 u_depth;
uniform float u_edge_ndc; // material edge size * per-vertex scale -> NDC units
in vec3 in_position;
in vec3 in_normal;
in float in_edge;      // per-vertex edge scale (PMX)
void main() {
    vec4 p = vec4((in_position.xy - u_frame.xy) * u_frame.z,
                  (in_position.z - u_depth.x) * u_depth.y, 1.0);
    vec2 n = in_normal.xy;
    float len = length(n);
    if (len > 1e-6) p.xy += n / len * u_edge_ndc * in_edge;
    gl_Position = p;
}
