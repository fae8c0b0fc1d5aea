#version 330
// THA1 recipe: white directional light of magnitude 0.5 travelling along +z
// (into the face, i.e. the direction TOWARD the light is -z) plus a white
// ambient light of magnitude u_ambient.
// colour = texture * diffuse * (ambient + 0.5 * max(N.L, 0)), clamped.
uniform sampler2D u_texture;
uniform bool u_has_texture;
uniform vec4 u_diffuse;        // material diffuse RGBA
uniform vec4 u_tex_tint;       // material-morph texture factor (1,1,1,1 = none)
uniform float u_ambient;
uniform float u_alpha_cutoff;
in vec3 v_normal;
in vec2 v_uv;
out vec4 f_color;
void main() {
    vec4 tex = u_has_texture ? texture(u_texture, v_uv) * u_tex_tint : vec4(1.0);
    vec4 c = tex * u_diffuse;
    if (c.a < u_alpha_cutoff) discard;
    vec3 n = normalize(v_normal);
    if (!gl_FrontFacing) n = -n;          // double-sided faces seen from behind
    float ndl = max(dot(n, vec3(0.0, 0.0, -1.0)), 0.0);
    f_color = vec4(clamp(c.rgb * (u_ambient + 0.5 * ndl), 0.0, 1.0), clamp(c.a, 0.0, 1.0));
}
